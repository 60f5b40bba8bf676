//! Applying fixes (`scoria fix`): written next.
