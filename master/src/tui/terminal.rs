//! Owning the terminal: [`TerminalGuard`] puts it in raw mode on the alternate screen and gives
//! it back on drop, whatever the exit path (return, `?`, panic: a panic hook restores it
//! before the panic message prints). Also [`LogLines`], where log lines go while the UI holds
//! the screen, so they neither tear the display nor get lost.

use std::collections::VecDeque;
use std::io::{Stdout, Write, stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// Whether a guard holds the terminal now: the panic hook restores only then.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// The terminal in raw mode on the alternate screen; restored when dropped.
pub struct TerminalGuard {
    /// The ratatui terminal drawing on stdout.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
    logs: LogLines,
}

impl TerminalGuard {
    /// Take the terminal; from now on log lines go to `logs` instead of stderr.
    pub fn enter(logs: LogLines) -> std::io::Result<TerminalGuard> {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if ACTIVE.swap(false, Ordering::SeqCst) {
                    restore();
                }
                previous(info);
            }));
        });
        // Set before the first change, so a failure half-way is undone by the drop below.
        ACTIVE.store(true, Ordering::SeqCst);
        logs.set_capturing(true);
        let mut guard = TerminalGuard {
            terminal: Terminal::new(CrosstermBackend::new(stdout()))?,
            logs,
        };
        enable_raw_mode()?;
        execute!(stdout(), EnterAlternateScreen, Hide)?;
        guard.terminal.clear()?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if ACTIVE.swap(false, Ordering::SeqCst) {
            restore();
        }
        self.logs.set_capturing(false);
        // Warnings and errors logged while the screen was taken are worth seeing afterwards.
        let mut err = std::io::stderr().lock();
        for line in self.logs.important() {
            let _ = err.write_all(line.as_bytes());
        }
    }
}

/// Leave the alternate screen, show the cursor, leave raw mode; errors are ignored (there is
/// nowhere left to report them).
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), LeaveAlternateScreen, Show);
}

/// Log lines captured while the terminal UI holds the screen: the binary's log writer asks
/// [`LogLines::capturing`] and, when true, hands each formatted line to [`LogLines::push`].
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct LogLines {
    inner: Arc<Mutex<LogState>>,
}

#[derive(Default)]
struct LogState {
    capturing: bool,
    /// Lines not yet taken by the UI.
    fresh: Vec<String>,
    /// Warnings and errors, replayed on stderr when the UI gives the screen back.
    important: VecDeque<String>,
}

/// Warnings kept for the replay.
const IMPORTANT: usize = 100;
/// Lines waiting for the UI at most (a flood of logs must not grow memory).
const FRESH: usize = 1000;

impl LogLines {
    /// Whether lines should come here rather than to stderr.
    pub fn capturing(&self) -> bool {
        self.lock().capturing
    }

    /// One formatted log line (with its newline); `important` for warnings and errors.
    pub fn push(&self, line: String, important: bool) {
        let mut s = self.lock();
        if important {
            if s.important.len() == IMPORTANT {
                s.important.pop_front();
            }
            s.important.push_back(line.clone());
        }
        if s.fresh.len() < FRESH {
            s.fresh.push(line);
        }
    }

    /// Lines pushed since the last call, oldest first, without their newlines.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().fresh)
            .into_iter()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    fn set_capturing(&self, on: bool) {
        self.lock().capturing = on;
    }

    fn important(&self) -> Vec<String> {
        self.lock().important.drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        // Held for a push or a swap only; a poisoned lock still holds valid lines.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_keep_warnings_for_the_replay_and_bound_the_rest() {
        let logs = LogLines::default();
        assert!(!logs.capturing());
        logs.push("INFO a\n".into(), false);
        logs.push("WARN b\n".into(), true);
        assert_eq!(logs.take(), ["INFO a", "WARN b"]);
        assert!(logs.take().is_empty());
        for i in 0..FRESH + 10 {
            logs.push(format!("{i}\n"), false);
        }
        assert_eq!(logs.take().len(), FRESH);
        assert_eq!(logs.important(), ["WARN b\n"]);
    }
}
