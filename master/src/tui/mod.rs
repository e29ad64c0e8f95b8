//! The master's terminal UI (`--tui`): watch a distributed run and steer it with keys.
//!
//! Elm architecture: a [`Model`] changed only by [`Model::update`] from [`Msg`]s, drawn by
//! [`view::view`]. [`run`] is the runtime around them: it feeds the master's published
//! snapshots, keys and signals in as messages and carries out the model's [`Action`]s by
//! sending commands through a [`MasterHandle`] on tasks of their own. It only reads snapshots
//! from a `watch` channel, so it can never slow aggregation or the protocol down.
//!
//! # Layout
//! - [`model`]: state, messages, key handling, the bounded history behind the charts.
//! - [`view`]: drawing a model on a frame.
//! - [`terminal`]: the terminal guard (restores the TTY on every exit path) and captured logs.

pub mod model;
pub mod terminal;
#[cfg(test)]
pub(crate) mod testdata;
pub mod view;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use model::{Action, Key, Model, Msg, View};
pub use terminal::LogLines;

use crate::MasterHandle;
use crate::snapshot::Snapshot;

/// What the terminal UI needs.
pub struct TuiConfig {
    /// The master's published snapshots.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Where its commands go.
    pub master: MasterHandle,
    /// Where workers join, shown while waiting (`HOST:PORT`).
    pub join_hint: String,
    /// The master's scenario in one line, if it has one.
    pub scenario: Option<String>,
    /// Log lines to show (and to keep off the screen while it is taken).
    pub logs: LogLines,
    /// Cancelled on Ctrl-C from outside the terminal (SIGINT): quit as `q` does.
    pub interrupted: CancellationToken,
    /// For the end-to-end test of the panic path only: `!` panics when set.
    pub panic_key: bool,
}

/// Whether a terminal UI can run here: stdin and stdout are both terminals.
pub fn possible() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Show the UI until the user quits (after stopping any run, whose results the master
/// writes), the master stops, or a signal asks to quit. The terminal is restored on return.
pub async fn run(config: TuiConfig) -> anyhow::Result<()> {
    let TuiConfig {
        mut snapshots,
        master,
        join_hint,
        scenario,
        logs,
        interrupted,
        panic_key,
    } = config;
    let mut model = Model::new(join_hint, scenario);
    model.update(Msg::Snapshot(snapshots.borrow_and_update().clone()));
    let mut term = terminal::TerminalGuard::enter(logs.clone()).context("taking the terminal")?;
    let mut keys = EventStream::new();
    let (replies_tx, mut replies) = mpsc::unbounded_channel::<Msg>();
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    let mut log_tick = tokio::time::interval(Duration::from_millis(500));
    let mut interrupt_seen = false;
    loop {
        term.terminal
            .draw(|frame| view::view(&model, frame))
            .context("drawing the terminal UI")?;
        let msg = tokio::select! {
            changed = snapshots.changed() => match changed {
                Ok(()) => Msg::Snapshot(snapshots.borrow_and_update().clone()),
                // The master has stopped: nothing left to watch or steer.
                Err(_) => break,
            },
            event = keys.next() => match event {
                Some(Ok(Event::Key(k))) => match key(k) {
                    Some(Key::Char('!')) if panic_key => panic!("panic key pressed (test hook)"),
                    Some(k) => Msg::Key(k),
                    None => continue,
                },
                // A resize (or anything else) just redraws at the top of the loop.
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => break,
            },
            Some(msg) = replies.recv() => msg,
            _ = log_tick.tick() => {
                let lines = logs.take();
                if lines.is_empty() {
                    continue;
                }
                Msg::Logs(lines)
            }
            _ = interrupted.cancelled(), if !interrupt_seen => {
                interrupt_seen = true;
                Msg::Interrupted
            }
            _ = terminate.recv() => Msg::Interrupted,
            _ = hangup.recv() => Msg::Interrupted,
        };
        match model.update(msg) {
            None => {}
            Some(Action::Quit) => break,
            Some(action) => carry_out(action, &master, &replies_tx),
        }
    }
    drop(term);
    Ok(())
}

/// Send a command on its own task; its answer comes back as a message.
fn carry_out(action: Action, master: &MasterHandle, replies: &mpsc::UnboundedSender<Msg>) {
    let (master, replies) = (master.clone(), replies.clone());
    tokio::spawn(async move {
        let msg = match action {
            Action::Start => Msg::Replied(
                model::Asked::Start,
                master.start().await.map(|id| format!("run {id} started")),
            ),
            Action::Stop(id) => Msg::Replied(
                model::Asked::Stop,
                master
                    .stop_run(id)
                    .await
                    .map(|()| format!("run {id} stopping: waiting for final reports")),
            ),
            Action::Scale(s) => Msg::Replied(
                model::Asked::Scale,
                master
                    .scale(s)
                    .await
                    .map(|()| format!("load set to ×{s:.2}")),
            ),
            Action::Quit => return,
        };
        let _ = replies.send(msg);
    });
}

/// The model's key for a terminal key press (releases and repeats are ignored).
fn key(k: KeyEvent) -> Option<Key> {
    if k.kind != KeyEventKind::Press {
        return None;
    }
    Some(match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::CtrlC,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Esc => Key::Esc,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        _ => return None,
    })
}
