//! Identity records: domains, projects, users, roles, assignments, tokens.
