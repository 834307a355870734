//! Ctrl-C: the first one cancels the running operation cleanly (processes killed, mounts and
//! half-written store entries removed); a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

/// Calls `cancel` on the first SIGINT/SIGTERM; exits with 130 on the second.
pub fn on_interrupt(cancel: impl Fn() + Send + 'static) {
    static SEEN: AtomicBool = AtomicBool::new(false);
    // Only fails if a handler is already set, in which case that one stays.
    let _ = ctrlc::set_handler(move || {
        if SEEN.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("cancelling...");
        cancel();
    });
}
