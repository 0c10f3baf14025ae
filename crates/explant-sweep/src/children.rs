//! The sweep's child runs, tied to it so that stopping the sweep stops them.
//!
//! A sweep that dies must not leave `explant run` processes computing (and writing into
//! its folder) behind it. Two mechanisms cover the two ways a sweep ends early:
//!
//! - SIGINT and SIGTERM are caught while the runs go. The sweep then kills the process
//!   group of every run in flight (each run starts in a group of its own, so one `kill`
//!   reaches it and anything it starts), discards their partial outputs, writes the
//!   table of what finished, and returns [`SweepError::Interrupted`](crate::SweepError).
//!   A second signal takes its default action.
//! - SIGKILL (or any other death) cannot be caught: on Linux each run is started with
//!   `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it when the thread that started it
//!   ends. The worker thread that starts a run waits for it, so the run never outlives
//!   its thread while the sweep lives.
//!
//! Because a run has its own process group, Ctrl-C at a terminal reaches only the sweep,
//! which passes it on as above.

// The signal handler and the child's pre-exec hook are calls into libc; each `unsafe`
// block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

/// The signal caught since [`Children::new`] (0: none).
static CAUGHT: AtomicI32 = AtomicI32::new(0);

/// The sweep's runs in flight, by process id (which is also their process group id).
/// While it lives, SIGINT and SIGTERM are caught (not acted on) so the sweep can stop
/// its runs; dropping it restores the previous handlers.
pub(crate) struct Children {
    pids: Mutex<Vec<u32>>,
    #[cfg(unix)]
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

#[cfg(unix)]
const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

#[cfg(unix)]
extern "C" fn on_stop_signal(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    CAUGHT.store(signal, Ordering::SeqCst);
}

impl Children {
    /// No runs yet; SIGINT and SIGTERM are caught from now on.
    pub(crate) fn new() -> Self {
        CAUGHT.store(0, Ordering::SeqCst);
        #[cfg(unix)]
        {
            let mut previous = Vec::new();
            for signal in STOP_SIGNALS {
                // SAFETY: `sigaction` is given fully initialised structs (zeroed, then the
                // handler and an empty mask set), and the handler only stores an atomic.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                    libc::sigemptyset(&mut action.sa_mask);
                    action.sa_flags = libc::SA_RESTART;
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(signal, &action, &mut old) == 0 {
                        previous.push((signal, old));
                    }
                }
            }
            Self { pids: Mutex::new(Vec::new()), previous }
        }
        #[cfg(not(unix))]
        Self { pids: Mutex::new(Vec::new()) }
    }

    /// The name of the signal that asked the sweep to stop, if one came.
    pub(crate) fn stop_signal(&self) -> Option<&'static str> {
        #[cfg(unix)]
        match CAUGHT.load(Ordering::SeqCst) {
            libc::SIGINT => return Some("SIGINT"),
            libc::SIGTERM => return Some("SIGTERM"),
            _ => {}
        }
        None
    }

    /// Run `cmd` to its end as a child tied to the sweep (its own process group; killed
    /// with the sweep), capturing its output.
    pub(crate) fn output(&self, cmd: &mut Command) -> io::Result<Output> {
        tie(cmd);
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let pid = child.id();
        if let Ok(mut pids) = self.pids.lock() {
            pids.push(pid);
        }
        // A stop that came while it started: `kill_all` below may have missed it.
        if self.stop_signal().is_some() {
            self.kill_all();
        }
        let output = child.wait_with_output();
        if let Ok(mut pids) = self.pids.lock() {
            pids.retain(|&p| p != pid);
        }
        output
    }

    /// Kill every run in flight (its whole process group), and let a further SIGINT or
    /// SIGTERM end the sweep at once.
    pub(crate) fn kill_all(&self) {
        #[cfg(unix)]
        {
            for signal in STOP_SIGNALS {
                // SAFETY: setting a signal's disposition to its default has no preconditions.
                unsafe { libc::signal(signal, libc::SIG_DFL) };
            }
            if let Ok(pids) = self.pids.lock() {
                for &pid in pids.iter() {
                    if let Ok(group) = libc::pid_t::try_from(pid) {
                        // SAFETY: `kill` has no memory-safety preconditions; the group is one
                        // this sweep started and has not yet reaped (it is removed from
                        // `pids` only after `wait`).
                        unsafe { libc::kill(-group, libc::SIGKILL) };
                    }
                }
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        #[cfg(unix)]
        for (signal, old) in &self.previous {
            // SAFETY: `old` is the action `sigaction` returned for this signal in `new`.
            unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
        }
    }
}

/// A run in its own process group and, on Linux, killed by the kernel when the thread
/// that starts it ends.
fn tie(cmd: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let sweep = std::process::id();
            // SAFETY: the hook runs in the child between fork and exec and calls only
            // async-signal-safe functions (`prctl`, `getppid`), allocating nothing.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // The sweep died before the request took effect: do not start.
                    if libc::getppid() as u32 != sweep {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                })
            };
        }
    }
}
