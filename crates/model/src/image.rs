//! Images in VDSM's sense: the bytes of a volume on a backend, as records.
//!
//! A volume's data is its *active image*. An image may be layered on another
//! (an overlay reading through to an immutable base). Each image has a
//! lifecycle state, owned by the flow that makes or removes it, and a
//! health, which says whether it is as the backend wants it:
//!
//! ```text
//!   (none) ──create flow──► creating ──data complete──► ready ──delete flow──► deleting ──► (gone)
//!                              │                                                  ▲
//!                              └────────────── undone ────────────────────────────┘ (record removed)
//!
//!   health:  optimized   as the backend wants it
//!            degraded    readable, but not optimal (a chain deeper than configured,
//!                        a raw image where the backend wants qcow2, …): an
//!                        `optimize` or `merge` fix applies
//!            broken      not readable as recorded (its file is missing, its
//!                        format or size disagrees, qemu-img check found
//!                        corruption): a `mend` fix applies
//! ```

use crate::volume::string_enum;

string_enum!(
    /// On-disk format of an image. Always known from its record, never probed.
    ImageFormat {
        Qcow2 = "qcow2",
        Raw = "raw",
    }
);

string_enum!(
    /// Where an image is in its life (see the module doc).
    ImageState {
        Creating = "creating",
        Ready = "ready",
        Deleting = "deleting",
    }
);

string_enum!(
    /// Whether an image is as its backend wants it (VDSM's image status).
    ImageHealth {
        Optimized = "optimized",
        Degraded = "degraded",
        Broken = "broken",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in ImageFormat::ALL {
            assert_eq!(f.as_str().parse::<ImageFormat>(), Ok(*f));
        }
        for s in ImageState::ALL {
            assert_eq!(s.as_str().parse::<ImageState>(), Ok(*s));
        }
        for h in ImageHealth::ALL {
            assert_eq!(h.as_str().parse::<ImageHealth>(), Ok(*h));
        }
        assert!("vmdk".parse::<ImageFormat>().is_err());
    }
}
