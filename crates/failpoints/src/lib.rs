//! Named failpoints at durable boundaries.
//!
//! Every place where Scoria makes something durable (a database commit, a file
//! created or removed, a process started) calls [`Failpoints::hit`] with a stable
//! name such as `flow.step.done:create_on_backend` or `storage.file.create`. A test
//! (or the debug endpoint, or `SCORIA_FAILPOINTS` at start-up) arms a name with an
//! [`Action`]:
//!
//! ```text
//!   error  the call returns an error, as if the operation had failed
//!   exit   the process exits on the spot (std::process::exit(86)), no cleanup
//!   crash  in-process simulation of `exit`: this instance is marked dead and
//!          every later hit on it fails, so no further durable write happens
//!   sleep(ms)  the call waits that many milliseconds, then goes on: holds an
//!          operation at a boundary so a test can act while it is in progress
//! ```
//!
//! `sleep` blocks the calling thread (a hit is synchronous), so it stalls one
//! worker of an async runtime for its duration: it is a test tool, armed only
//! in builds with failpoints.
//!
//! Without the `enabled` feature the registry is never consulted: [`Failpoints::hit`]
//! checks nothing and the release binary carries no failpoint behaviour at all.
//! Names may carry a `*` suffix wildcard when armed (`flow.step.*`).

use std::sync::Arc;
#[cfg(feature = "enabled")]
use std::sync::Mutex;
#[cfg(feature = "enabled")]
use std::sync::atomic::{AtomicBool, Ordering};

/// What an armed failpoint does when it is hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Return an error from the hit.
    Error,
    /// Exit the process immediately with status [`EXIT_CODE`].
    Exit,
    /// Mark this instance dead: this and every later hit fail with [`Fault::Crashed`].
    Crash,
    /// Wait this many milliseconds (blocking the thread), then succeed.
    Sleep(u64),
}

/// The longest `sleep` a failpoint accepts: a minute.
pub const MAX_SLEEP_MS: u64 = 60_000;

/// The exit status used by [`Action::Exit`], so a supervisor can tell a failpoint
/// exit from a real failure.
pub const EXIT_CODE: i32 = 86;

/// The error a failpoint produces.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("failpoint {0} injected an error")]
    Injected(String),
    #[error("simulated crash (failpoint {0})")]
    Crashed(String),
}

impl Fault {
    /// True when the fault simulates the death of the process: the caller must not
    /// write anything more, not even a failure record.
    pub fn is_crash(&self) -> bool {
        matches!(self, Fault::Crashed(_))
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "error" => Ok(Action::Error),
            "exit" => Ok(Action::Exit),
            "crash" => Ok(Action::Crash),
            other => {
                let ms = other
                    .strip_prefix("sleep(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|ms| ms.trim().parse::<u64>().ok())
                    .filter(|ms| *ms <= MAX_SLEEP_MS);
                ms.map(Action::Sleep).ok_or_else(|| {
                    format!(
                        "unknown failpoint action {other:?} (error, exit, crash, sleep(ms) with ms up to {MAX_SLEEP_MS})"
                    )
                })
            }
        }
    }
}

#[cfg(feature = "enabled")]
#[derive(Debug)]
struct Armed {
    pattern: String,
    action: Action,
    /// Fire only on the n-th hit (1-based) and after; 1 fires on the first.
    after: u64,
    /// Fire at most this many times (None: always).
    times: Option<u64>,
    hits: u64,
    fired: u64,
}

/// A registry of armed failpoints, shared by everything one engine instance owns.
#[derive(Debug, Default)]
pub struct Failpoints {
    #[cfg(feature = "enabled")]
    armed: Mutex<Vec<Armed>>,
    #[cfg(feature = "enabled")]
    dead: AtomicBool,
}

impl Failpoints {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// True when failpoints are compiled in.
    pub const fn compiled_in() -> bool {
        cfg!(feature = "enabled")
    }

    /// Arm `pattern` (an exact name, or a prefix ending in `*`). It fires from the
    /// `after`-th matching hit on, at most `times` times.
    #[cfg_attr(not(feature = "enabled"), allow(unused_variables))]
    pub fn arm(&self, pattern: &str, action: Action, after: u64, times: Option<u64>) {
        #[cfg(feature = "enabled")]
        {
            let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
            armed.retain(|a| a.pattern != pattern);
            armed.push(Armed {
                pattern: pattern.to_owned(),
                action,
                after: after.max(1),
                times,
                hits: 0,
                fired: 0,
            });
        }
    }

    /// Disarm everything and revive a crashed instance.
    pub fn clear(&self) {
        #[cfg(feature = "enabled")]
        {
            self.armed.lock().unwrap_or_else(|e| e.into_inner()).clear();
            self.dead.store(false, Ordering::SeqCst);
        }
    }

    /// Arm from a spec such as `flow.step.done:create_on_backend=exit;storage.*=error@3`
    /// (`@n`: fire from the n-th hit on). Used for `SCORIA_FAILPOINTS`.
    pub fn arm_spec(&self, spec: &str) -> Result<(), String> {
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rest) = part
                .split_once('=')
                .ok_or_else(|| format!("failpoint spec {part:?} is not name=action"))?;
            let (action, after) = match rest.split_once('@') {
                Some((a, n)) => (a, n.parse::<u64>().map_err(|e| format!("{part:?}: {e}"))?),
                None => (rest, 1),
            };
            self.arm(name.trim(), action.trim().parse()?, after, None);
        }
        Ok(())
    }

    /// True once a `crash` failpoint fired on this instance.
    pub fn is_dead(&self) -> bool {
        #[cfg(feature = "enabled")]
        {
            self.dead.load(Ordering::SeqCst)
        }
        #[cfg(not(feature = "enabled"))]
        {
            false
        }
    }

    /// The failpoint `name` is reached. Returns `Err` when it (or an earlier crash)
    /// says so; exits the process for `exit`. A no-op without the feature.
    #[inline]
    #[cfg_attr(not(feature = "enabled"), allow(unused_variables))]
    pub fn hit(&self, name: &str) -> Result<(), Fault> {
        #[cfg(feature = "enabled")]
        {
            if self.dead.load(Ordering::SeqCst) {
                return Err(Fault::Crashed(name.to_owned()));
            }
            let action = {
                let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
                let mut fired = None;
                for a in armed.iter_mut() {
                    let matches = match a.pattern.strip_suffix('*') {
                        Some(prefix) => name.starts_with(prefix),
                        None => a.pattern == name,
                    };
                    if !matches {
                        continue;
                    }
                    a.hits += 1;
                    if a.hits >= a.after && a.times.is_none_or(|t| a.fired < t) {
                        a.fired += 1;
                        fired = Some(a.action);
                        break;
                    }
                }
                fired
            };
            match action {
                None => Ok(()),
                Some(Action::Error) => Err(Fault::Injected(name.to_owned())),
                Some(Action::Crash) => {
                    self.dead.store(true, Ordering::SeqCst);
                    Err(Fault::Crashed(name.to_owned()))
                }
                Some(Action::Sleep(ms)) => {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    Ok(())
                }
                Some(Action::Exit) => {
                    eprintln!("failpoint {name}: exiting the process");
                    std::process::exit(EXIT_CODE)
                }
            }
        }
        #[cfg(not(feature = "enabled"))]
        {
            Ok(())
        }
    }

    /// Names hit so far and how often, for tests that enumerate crash points.
    #[cfg(feature = "enabled")]
    pub fn armed_hits(&self) -> Vec<(String, u64)> {
        let armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        armed.iter().map(|a| (a.pattern.clone(), a.hits)).collect()
    }
}

#[cfg(all(test, feature = "enabled"))]
mod tests {
    use super::*;

    #[test]
    fn error_fires_from_the_nth_hit_and_only_times_times() {
        let fp = Failpoints::new();
        fp.arm("a.b", Action::Error, 2, Some(1));
        assert_eq!(fp.hit("a.b"), Ok(()));
        assert_eq!(fp.hit("a.b"), Err(Fault::Injected("a.b".into())));
        assert_eq!(fp.hit("a.b"), Ok(()));
        assert_eq!(fp.hit("other"), Ok(()));
    }

    #[test]
    fn crash_latches_until_cleared() {
        let fp = Failpoints::new();
        fp.arm("x.*", Action::Crash, 1, None);
        assert!(fp.hit("y").is_ok());
        assert!(fp.hit("x.1").unwrap_err().is_crash());
        assert!(
            fp.hit("y").unwrap_err().is_crash(),
            "a dead instance stays dead"
        );
        assert!(fp.is_dead());
        fp.clear();
        assert!(fp.hit("x.1").is_ok());
    }

    #[test]
    fn spec_parses_and_rejects_garbage() {
        let fp = Failpoints::new();
        fp.arm_spec("a=error@2; b=crash").unwrap();
        assert!(fp.hit("a").is_ok());
        assert!(fp.hit("a").is_err());
        assert!(fp.hit("b").unwrap_err().is_crash());
        assert!(fp.arm_spec("nonsense").is_err());
        assert!(fp.arm_spec("a=explode").is_err());
        for bad in [
            "sleep",
            "sleep()",
            "sleep(-1)",
            "sleep(1",
            "sleep(99999999)",
        ] {
            assert!(fp.arm_spec(&format!("a={bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn sleep_goes_on_after_the_pause() {
        let fp = Failpoints::new();
        fp.arm_spec("s=sleep(1)@2").unwrap();
        assert_eq!("sleep( 5 )".parse::<Action>(), Ok(Action::Sleep(5)));
        assert!(fp.hit("s").is_ok());
        assert!(fp.hit("s").is_ok());
        assert_eq!(fp.armed_hits(), [("s".to_string(), 2)]);
        assert!(!fp.is_dead());
    }
}

#[cfg(all(test, not(feature = "enabled")))]
mod tests {
    use super::*;

    #[test]
    fn without_the_feature_nothing_fires() {
        let fp = Failpoints::new();
        fp.arm("a", Action::Crash, 1, None);
        assert!(fp.hit("a").is_ok());
        assert!(!fp.is_dead());
    }
}
