//! What the agent tells systemd (`Type=notify`): ready once the data plane is attached or
//! adopted and its routes installed, reloading and ready again around a reload, stopping,
//! and the watchdog pings. Outside systemd (`NOTIFY_SOCKET` unset) each is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states`; a notification systemd cannot take is logged, never fatal: the agent
/// forwards whether or not its supervisor hears it.
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        crate::event!(WARN, "notify_error", error = e.to_string());
    }
}

/// `READY=1`, with a one-line status for `systemctl status`.
pub fn ready(node: &str, adopted: bool) {
    let how = if adopted { "adopted" } else { "attached" };
    send(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("{node}: data plane {how}, forwarding")),
    ]);
}

/// `RELOADING=1` (with the monotonic time newer systemd asks for) before a reload.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `READY=1` after a reload, with what came of it.
pub fn reloaded(outcome: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(outcome)]);
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half the `WatchdogSec=` systemd set, as sd_watchdog_enabled(3)
/// advises; None without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
