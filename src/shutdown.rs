//! SIGTERM/SIGINT handling through a self-pipe, and the process-wide "stopping" flag.
//!
//! The signal handler only sets a flag and writes one byte (both async-signal-safe); a normal
//! thread blocks on the pipe and does the real work. Must not do anything else in the handler.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_signal: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
    let fd = PIPE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a live local.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// Whether a shutdown signal has arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The read end of the self-pipe; [`Signals::wait`] blocks until SIGTERM or SIGINT.
pub struct Signals {
    read_fd: libc::c_int,
}

impl Signals {
    /// Installs the handlers for SIGTERM and SIGINT.
    pub fn install() -> io::Result<Signals> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own. O_CLOEXEC keeps CLIs from inheriting them.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        PIPE_WRITE.store(fds[1], Ordering::SeqCst);
        for signal in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: a zeroed sigaction with a plain handler is valid; the handler is async-signal-safe.
            let rc = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut())
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Signals { read_fd: fds[0] })
    }

    /// Blocks until a shutdown signal arrives.
    pub fn wait(&self) {
        let mut byte = 0u8;
        loop {
            // SAFETY: reading one byte into a live local from a descriptor we own.
            let n = unsafe { libc::read(self.read_fd, (&mut byte as *mut u8).cast(), 1) };
            if n == 1 || (n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted)
            {
                return;
            }
        }
    }
}
