//! The qemu wrapper: the only place in Scoria that starts `qemu-*` processes.
//!
//! Architecture invariant: nothing else spawns processes. `clippy.toml` forbids
//! `Command::new` everywhere; `command` below is the one sanctioned exception,
//! and only the modules of this directory call it. Keeping every invocation
//! here keeps the rules about formats, paths and errors (see [`img`]) in one
//! place, and lets a reader find every process Scoria can start.
//!
//! - [`img`]: `qemu-img` (create, create an overlay, info, resize, convert,
//!   compare, check) and, for tests and tools, `qemu-io` (write and read
//!   guest data).
//! - [`backup`]: what a backup reads and a restore writes: persistent dirty
//!   bitmaps (`qemu-img bitmap`), allocation and dirty maps (`qemu-img map`,
//!   over a `qemu-nbd` unix socket for a bitmap), byte ranges out of an
//!   image and a raw file written over one.
//! - [`rebase`]: `qemu-img rebase` in safe mode, dropping a layer from an
//!   overlay's chain (the repository check's `merge`).
//! - [`repair`]: `qemu-img check -r`, repairing leaks and corruptions of a
//!   qcow2 image (the repository check's `mend`).
//! - [`qmp`]: a client of the QEMU Machine Protocol, to talk to running daemons.
//! - [`untrusted`]: `qemu-img info` on an uploaded image, under CPU-time and
//!   address-space limits, after `crate::inspect` passed it.
//! - [`qsd`]: `qemu-storage-daemon`, started detached so that it outlives
//!   Scoria, found and adopted again after a restart, stopped.

use std::ffi::OsStr;

pub mod backup;
pub mod img;
pub mod nbd;
pub mod qmp;
pub mod qsd;
pub mod rebase;
pub mod repair;
pub mod untrusted;

pub use img::*;

/// A command for `program` with a fixed locale (qemu's messages are parsed in
/// places), which is killed if the caller drops it: an operation given up on
/// must not leave a qemu process behind.
///
/// This is the sanctioned place to build commands (see the module doc): the
/// workspace's `clippy.toml` forbids `Command::new` everywhere else.
#[allow(clippy::disallowed_methods)]
pub(crate) fn command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env("LC_ALL", "C").kill_on_drop(true);
    cmd
}
