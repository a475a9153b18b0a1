//! Printing when the reader may have gone away (`medic apply 2>&1 | head -1`). Rust's
//! `println!` panics on a closed pipe; here a failed write is never a panic. During a run,
//! a closed standard output or error ends the run like a first Ctrl-C: no new step starts,
//! the steps in flight finish and are journaled, and the run stops resumable (exit 3).

use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use medic_exec::Control;

static CLOSED: AtomicBool = AtomicBool::new(false);
/// The run to stop when the output closes (none outside a run).
static RUN: Mutex<Option<Control>> = Mutex::new(None);

/// Stops `control`'s run (drain, like a first Ctrl-C) when the output closes.
pub(crate) fn stop_on_close(control: &Control) {
    *RUN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(control.clone());
    if CLOSED.load(Ordering::SeqCst) {
        control.cancel.cancel();
    }
}

fn closed() {
    if CLOSED.swap(true, Ordering::SeqCst) {
        return;
    }
    if let Some(c) = RUN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
    {
        // Said on whichever stream is still open; a failure here is expected.
        let _ = writeln!(
            std::io::stderr(),
            "the output was closed: no new step starts; the steps in flight finish, then the run stops (resume it with `medic resume`)"
        );
        c.cancel.cancel();
    }
}

fn write(mut w: impl std::io::Write, s: &str) {
    if w.write_all(s.as_bytes()).and_then(|()| w.flush()).is_err() {
        closed();
    }
}

/// `s` and a newline on standard error.
pub(crate) fn err_line(s: &str) {
    write(std::io::stderr().lock(), &format!("{s}\n"));
}

/// `s` as it is on standard error.
pub(crate) fn err_text(s: &str) {
    write(std::io::stderr().lock(), s);
}

/// `s` and a newline on standard output.
pub(crate) fn out_line(s: &str) {
    write(std::io::stdout().lock(), &format!("{s}\n"));
}

/// Whether the pipe behind `fd` has lost its reader (POLLERR on a pipe's write end) or its
/// terminal hung up (POLLHUP). Files, terminals and /dev/null never report either.
fn fd_closed(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::empty())];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&now)).is_ok_and(|n| n == 1)
        && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
}

/// Watches standard output and error while a run goes on, so that a reader that went away
/// stops the run even when nothing is printed for a while.
pub(crate) async fn watch_streams() {
    loop {
        use std::os::fd::AsFd as _;
        if fd_closed(std::io::stdout().as_fd()) || fd_closed(std::io::stderr().as_fd()) {
            closed();
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
