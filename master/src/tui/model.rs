//! The terminal UI's state and its one way of changing: [`Model::update`] takes a [`Msg`] (a
//! snapshot, a key, a command's reply, log lines) and returns the [`Action`] the runtime must
//! carry out, if any. Pure: no terminal, no channel, no clock, so key handling is tested as
//! plain state updates. Rendering it is the `view` module's job.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use stampede_scenarios::spec::{Family, Role, Specs};

use crate::results::per_second;
use crate::snapshot::{NameView, RunView, Snapshot};
use crate::state::{RunState, WorkerState};

/// Points kept for the charts: one per aggregated second, so ten minutes.
pub const HISTORY: usize = 600;
/// Log lines kept for the failures view.
pub const LOG_LINES: usize = 50;
/// How much `+` and `-` change the load.
pub const STEP: f64 = 0.10;

/// The screens, in `Tab` order. The last three appear only when the run has their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Workers, request names and a req/s sparkline on one screen.
    Overview,
    /// Every request name with its counts and latency percentiles.
    Requests,
    /// Every worker.
    Workers,
    /// req/s and p50/p99 over time.
    Charts,
    /// Failures by kind, the run's events and the log.
    Failures,
    /// LLM figures: TTFT, TPOT, ITL, tokens/s.
    Llm,
    /// The 3 × 3 grid of SLO attainment by tier and SLO class.
    Priority,
    /// Downloads: bytes/s, clients done, time to first byte.
    Downloads,
}

impl View {
    /// Its tab label.
    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Requests => "Requests",
            View::Workers => "Workers",
            View::Charts => "Charts",
            View::Failures => "Failures",
            View::Llm => "LLM",
            View::Priority => "Priority",
            View::Downloads => "Downloads",
        }
    }
}

/// A key, as the model understands it (the runtime maps terminal events to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Tab: next view.
    Tab,
    /// Shift-Tab: previous view.
    BackTab,
    /// Escape: close the help.
    Esc,
    /// Up arrow: scroll up.
    Up,
    /// Down arrow: scroll down.
    Down,
    /// Ctrl-C: same as `q`.
    CtrlC,
}

/// Which command a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// `s`.
    Start,
    /// `x` or quitting.
    Stop,
    /// `+` or `-`.
    Scale,
}

/// What the model reacts to.
#[derive(Debug, Clone)]
pub enum Msg {
    /// The master published a snapshot.
    Snapshot(Arc<Snapshot>),
    /// A key was pressed.
    Key(Key),
    /// The master answered a command: a message to show, or why it refused.
    Replied(Asked, Result<String, String>),
    /// New log lines (oldest first).
    Logs(Vec<String>),
    /// A signal (Ctrl-C from outside, SIGTERM, SIGHUP): quit as `q` does.
    Interrupted,
}

/// What the runtime must do for the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a run of the master's scenario.
    Start,
    /// Stop this run.
    Stop(u64),
    /// Set the run's scale (1.0 = as written).
    Scale(f64),
    /// Leave the terminal UI.
    Quit,
}

/// One aggregated second of the run, for the charts.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the run's load started.
    pub t: f64,
    /// Requests per second.
    pub rps: f64,
    /// Failures per second.
    pub fps: f64,
    /// Median latency of that second, ms.
    pub p50_ms: f64,
    /// p99 of that second, ms.
    pub p99_ms: f64,
    /// Response bytes per second.
    pub bytes_per_s: f64,
}

/// The status line's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The text.
    pub text: String,
    /// Whether it reports a refusal or an error.
    pub error: bool,
}

/// Totals of a name at one point, to turn counters into rates.
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals {
    t: f64,
    bytes: u64,
    counters: BTreeMap<String, u64>,
}

/// Everything the terminal UI shows.
#[derive(Debug, Clone)]
pub struct Model {
    /// The latest snapshot.
    pub snapshot: Arc<Snapshot>,
    /// The screen shown.
    pub view: View,
    /// Whether the help is open over it.
    pub help: bool,
    /// Rows scrolled past in the current view's main table.
    pub scroll: usize,
    /// Where workers join (shown while waiting).
    pub join_hint: String,
    /// The master's scenario, one line, if it has one (`s` needs it).
    pub scenario: Option<String>,
    /// The run the history belongs to.
    history_run: Option<u64>,
    /// The last `intervals` value sampled.
    history_intervals: u64,
    /// One point per aggregated second of the current (or last) run, oldest first.
    pub history: VecDeque<Sample>,
    /// Rates of every counter (and `bytes`) per request name and for the total (key
    /// [`crate::summary::AGGREGATED`]), per second over the last sampled interval; once the
    /// run has finished, over the whole run (as its summary gives them).
    pub rates: BTreeMap<String, BTreeMap<String, f64>>,
    last_totals: BTreeMap<String, Totals>,
    /// The scale asked with `+`/`-` and not yet seen in a snapshot.
    pub scale_asked: Option<f64>,
    /// The last command's outcome.
    pub status: Option<Status>,
    /// Recent log lines, oldest first.
    pub logs: VecDeque<String>,
    /// Set by `q` while a run goes on: quit once that run has finished.
    pub quitting: Option<u64>,
}

impl Model {
    /// A model before any snapshot.
    pub fn new(join_hint: String, scenario: Option<String>) -> Model {
        Model {
            snapshot: Arc::new(Snapshot::default()),
            view: View::Overview,
            help: false,
            scroll: 0,
            join_hint,
            scenario,
            history_run: None,
            history_intervals: 0,
            history: VecDeque::new(),
            rates: BTreeMap::new(),
            last_totals: BTreeMap::new(),
            scale_asked: None,
            status: None,
            logs: VecDeque::new(),
            quitting: None,
        }
    }

    /// The current or last run.
    pub fn run(&self) -> Option<&RunView> {
        self.snapshot.run.as_ref()
    }

    /// The run going on (assigning, running or stopping), if any.
    pub fn active_run(&self) -> Option<&RunView> {
        self.run().filter(|r| r.state != RunState::Finished)
    }

    /// The scale in force, or the one just asked for.
    pub fn scale(&self) -> f64 {
        self.scale_asked
            .or_else(|| self.run().map(|r| r.scale))
            .unwrap_or(1.0)
    }

    /// The views to cycle through: the five general ones, then the kind views whose data the
    /// run has.
    pub fn views(&self) -> Vec<View> {
        let mut v = vec![
            View::Overview,
            View::Requests,
            View::Workers,
            View::Charts,
            View::Failures,
        ];
        if let Some(run) = self.run() {
            if run.specs.has(Family::LlmTiming) {
                v.push(View::Llm);
            }
            if run.specs.role(Role::SloMet).is_some() || !priority_cells(run).is_empty() {
                v.push(View::Priority);
            }
            if run.specs.has(Family::Download) {
                v.push(View::Downloads);
            }
        }
        v
    }

    /// React to a message; the action the runtime must take, if any.
    pub fn update(&mut self, msg: Msg) -> Option<Action> {
        match msg {
            Msg::Snapshot(s) => self.on_snapshot(s),
            Msg::Key(k) => self.on_key(k),
            Msg::Replied(asked, r) => {
                if asked == Asked::Scale && r.is_err() {
                    self.scale_asked = None;
                }
                self.status = Some(match r {
                    Ok(text) => Status { text, error: false },
                    Err(text) => Status { text, error: true },
                });
                None
            }
            Msg::Logs(lines) => {
                for l in lines {
                    if self.logs.len() == LOG_LINES {
                        self.logs.pop_front();
                    }
                    self.logs.push_back(l);
                }
                None
            }
            Msg::Interrupted => self.quit(),
        }
    }

    fn on_snapshot(&mut self, s: Arc<Snapshot>) -> Option<Action> {
        self.snapshot = s;
        if let Some(run) = self.snapshot.run.clone() {
            if self.history_run != Some(run.id) {
                self.history_run = Some(run.id);
                self.history.clear();
                self.rates.clear();
                self.last_totals.clear();
                self.history_intervals = 0;
                self.scale_asked = None;
            }
            if run.intervals > self.history_intervals {
                self.history_intervals = run.intervals;
                self.sample(&run);
            }
            if run.state == RunState::Finished {
                self.rates = run_rates(&run);
            }
            if self
                .scale_asked
                .is_some_and(|s| (s - run.scale).abs() < 1e-9)
            {
                self.scale_asked = None;
            }
        }
        // Tab order may have changed (a kind view appeared); stay on a view that exists.
        if !self.views().contains(&self.view) {
            self.view = View::Overview;
        }
        match self.quitting {
            Some(id) if self.active_run().is_none_or(|r| r.id != id) => Some(Action::Quit),
            _ => None,
        }
    }

    /// Take one point for the charts and update the counter rates.
    fn sample(&mut self, run: &RunView) {
        let t = run.elapsed_s;
        let mut totals_now = BTreeMap::new();
        for n in run.names.iter().chain(std::iter::once(&run.total)) {
            let now = Totals {
                t,
                bytes: n.bytes,
                counters: n.counters.clone(),
            };
            if let Some(before) = self.last_totals.get(&n.name) {
                let dt = now.t - before.t;
                if dt > 0.0 {
                    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                    let mut r: BTreeMap<String, f64> = now
                        .counters
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                rate(*v, before.counters.get(k).copied().unwrap_or(0)),
                            )
                        })
                        .collect();
                    r.insert("bytes".into(), rate(now.bytes, before.bytes));
                    self.rates.insert(n.name.clone(), r);
                }
            }
            totals_now.insert(n.name.clone(), now);
        }
        self.last_totals = totals_now;
        let total = &run.total;
        let bytes_per_s = self
            .rates
            .get(&total.name)
            .and_then(|r| r.get("bytes"))
            .copied()
            .unwrap_or(0.0);
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Sample {
            t,
            rps: total.rps,
            fps: total.fps,
            p50_ms: total.interval_p50_ms,
            p99_ms: total.interval_p99_ms,
            bytes_per_s,
        });
    }

    fn on_key(&mut self, key: Key) -> Option<Action> {
        if self.help {
            // Any key closes the help; `q` still quits.
            self.help = false;
            return match key {
                Key::Char('q') | Key::CtrlC => self.quit(),
                _ => None,
            };
        }
        match key {
            Key::Char('q') | Key::CtrlC => self.quit(),
            Key::Char('?') => {
                self.help = true;
                None
            }
            Key::Tab => {
                self.switch(1);
                None
            }
            Key::BackTab => {
                self.switch(-1);
                None
            }
            Key::Char(c @ '1'..='9') => {
                let i = c as usize - '1' as usize;
                if let Some(v) = self.views().get(i) {
                    self.view = *v;
                    self.scroll = 0;
                }
                None
            }
            Key::Up => {
                self.scroll = self.scroll.saturating_sub(1);
                None
            }
            Key::Down => {
                self.scroll += 1;
                None
            }
            Key::Char('s') => self.start(),
            Key::Char('x') => self.stop(),
            Key::Char('+') | Key::Char('=') => self.rescale(1.0 + STEP),
            Key::Char('-') | Key::Char('_') => self.rescale(1.0 - STEP),
            Key::Esc | Key::Char(_) => None,
        }
    }

    fn switch(&mut self, by: isize) {
        let views = self.views();
        let at = views.iter().position(|v| *v == self.view).unwrap_or(0) as isize;
        let n = views.len() as isize;
        self.view = views[((at + by).rem_euclid(n)) as usize];
        self.scroll = 0;
    }

    fn say(&mut self, text: impl Into<String>, error: bool) {
        self.status = Some(Status {
            text: text.into(),
            error,
        });
    }

    fn start(&mut self) -> Option<Action> {
        if let Some(run) = self.active_run() {
            let text = format!("run {} is {}: x stops it", run.id, run.state);
            self.say(text, true);
            return None;
        }
        if self.scenario.is_none() {
            self.say(
                "no scenario: give the master --scenario (or start runs over the API)",
                true,
            );
            return None;
        }
        let ready = self
            .snapshot
            .workers
            .iter()
            .filter(|w| w.state != WorkerState::Lost)
            .count();
        if ready == 0 {
            self.say("no worker has joined yet", true);
            return None;
        }
        self.say(format!("starting on {ready} worker(s)…"), false);
        Some(Action::Start)
    }

    fn stop(&mut self) -> Option<Action> {
        match self.active_run() {
            Some(run) if run.state == RunState::Stopping => {
                let text = format!("run {} is already stopping", run.id);
                self.say(text, false);
                None
            }
            Some(run) => {
                let id = run.id;
                self.say(format!("stopping run {id}…"), false);
                Some(Action::Stop(id))
            }
            None => {
                self.say("no run is going on", true);
                None
            }
        }
    }

    fn rescale(&mut self, factor: f64) -> Option<Action> {
        let Some(run) = self.active_run() else {
            self.say("no run is going on: +/- change a running run's load", true);
            return None;
        };
        if run.state == RunState::Stopping {
            self.say("the run is stopping", true);
            return None;
        }
        // Rounded to 0.1 %: repeated steps stay readable (1.1, 1.21, 1.331).
        let scale = ((self.scale() * factor * 1000.0).round() / 1000.0).max(0.01);
        self.scale_asked = Some(scale);
        self.say(format!("load ×{scale:.2}"), false);
        Some(Action::Scale(scale))
    }

    /// `q`: quit at once when nothing runs; otherwise stop the run and quit once it has
    /// finished (its results written). A second `q` while waiting quits at once: the master
    /// still finishes the run as it shuts down.
    fn quit(&mut self) -> Option<Action> {
        if self.quitting.is_some() {
            return Some(Action::Quit);
        }
        let Some(run) = self.active_run() else {
            return Some(Action::Quit);
        };
        let (id, stopping) = (run.id, run.state == RunState::Stopping);
        self.quitting = Some(id);
        self.say(
            format!("quitting: stopping run {id} and writing its results (q again: at once)"),
            false,
        );
        if stopping {
            None
        } else {
            Some(Action::Stop(id))
        }
    }
}

/// `connections: 50 new · 6,050 reused` for a name (or the total) whose driver counts
/// connections; `None` for one that does not.
pub fn connections_line(specs: &Specs, n: &NameView) -> Option<String> {
    let count = |role| specs.name_of(role).and_then(|c| n.counters.get(c));
    let (new, reused) = (count(Role::NewConnections), count(Role::ReusedConnections));
    if new.is_none() && reused.is_none() {
        return None;
    }
    let (new, reused) = (new.copied().unwrap_or(0), reused.copied().unwrap_or(0));
    let all = new + reused;
    let share = if all == 0 {
        String::new()
    } else {
        format!(" ({:.1}% reused)", reused as f64 * 100.0 / all as f64)
    };
    Some(format!(
        "connections: {} new · {} reused{share}",
        crate::results::table::thousands(new),
        crate::results::table::thousands(reused)
    ))
}

/// A name's req/s as shown: over the last interval while the run goes on, over the whole run
/// once it has finished (as the run's summary gives it).
pub fn rps(run: &RunView, n: &NameView) -> f64 {
    if run.state == RunState::Finished {
        per_second(n.requests, run.elapsed_s)
    } else {
        n.rps
    }
}

/// Every counter (and `bytes`) per name and for the total over the whole run: a finished
/// run's rates.
fn run_rates(run: &RunView) -> BTreeMap<String, BTreeMap<String, f64>> {
    run.names
        .iter()
        .chain(std::iter::once(&run.total))
        .map(|n| {
            let mut r: BTreeMap<String, f64> = n
                .counters
                .iter()
                .map(|(k, v)| (k.clone(), per_second(*v, run.elapsed_s)))
                .collect();
            r.insert("bytes".into(), per_second(n.bytes, run.elapsed_s));
            (n.name.clone(), r)
        })
        .collect()
}

/// SLO classes of priority traffic, in grid order, with their latency objective.
pub const SLO_CLASSES: [(&str, &str); 3] =
    [("urgent", "100ms"), ("normal", "500ms"), ("relaxed", "2s")];

/// One cell of the priority grid: a request name that is a tier × SLO class.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityCell {
    /// Tier 1..=3.
    pub tier: usize,
    /// Index in [`SLO_CLASSES`].
    pub class: usize,
    /// Requests so far.
    pub requests: u64,
    /// Requests that met their SLO (the `slo_met` counter), if the driver counts them.
    pub slo_met: Option<u64>,
    /// p99 latency so far, ms.
    pub p99_ms: f64,
}

/// The priority grid's cells: request names naming a tier (`tier1`..`tier3`) and an SLO class
/// (`urgent`, `normal`, `relaxed`), such as `tier1_urgent`.
pub fn priority_cells(run: &RunView) -> Vec<PriorityCell> {
    let slo_met = run.specs.name_of(Role::SloMet);
    run.names
        .iter()
        .filter_map(|n| {
            let name = n.name.to_ascii_lowercase();
            let at = name.find("tier")? + 4;
            let tier = name[at..].chars().next()?.to_digit(10)? as usize;
            let class = SLO_CLASSES.iter().position(|(c, _)| name.contains(c))?;
            (1..=3).contains(&tier).then(|| PriorityCell {
                tier,
                class,
                requests: n.requests,
                slo_met: slo_met.and_then(|c| n.counters.get(c)).copied(),
                p99_ms: n.p99_ms,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::testdata;

    fn model_with(snapshot: Snapshot) -> Model {
        let mut m = Model::new("127.0.0.1:7400".into(), Some("closed: 10 users".into()));
        m.update(Msg::Snapshot(Arc::new(snapshot)));
        m
    }

    fn press(m: &mut Model, c: char) -> Option<Action> {
        m.update(Msg::Key(Key::Char(c)))
    }

    #[test]
    fn s_starts_only_with_workers_and_no_run() {
        let mut m = model_with(Snapshot::default());
        assert_eq!(press(&mut m, 's'), None);
        assert!(m.status.as_ref().unwrap().error);
        let mut m = model_with(testdata::waiting());
        assert_eq!(press(&mut m, 's'), Some(Action::Start));
        let mut m = model_with(testdata::running());
        assert_eq!(press(&mut m, 's'), None, "a run is going on");
        let mut m = Model::new(String::new(), None);
        m.update(Msg::Snapshot(Arc::new(testdata::waiting())));
        assert_eq!(press(&mut m, 's'), None, "no scenario");
        assert!(m.status.unwrap().text.contains("--scenario"));
        // A finished run does not block the next one.
        let mut m = model_with(testdata::finished());
        assert_eq!(press(&mut m, 's'), Some(Action::Start));
    }

    #[test]
    fn x_stops_the_running_run() {
        let mut m = model_with(testdata::running());
        assert_eq!(press(&mut m, 'x'), Some(Action::Stop(7)));
        let mut m = model_with(testdata::waiting());
        assert_eq!(press(&mut m, 'x'), None);
        let mut stopping = testdata::running();
        stopping.run.as_mut().unwrap().state = RunState::Stopping;
        let mut m = model_with(stopping);
        assert_eq!(press(&mut m, 'x'), None);
    }

    #[test]
    fn plus_and_minus_step_the_scale_by_ten_percent() {
        let mut m = model_with(testdata::running());
        assert_eq!(press(&mut m, '+'), Some(Action::Scale(1.1)));
        // Before the snapshot shows it, a second press builds on the first.
        assert_eq!(press(&mut m, '+'), Some(Action::Scale(1.21)));
        assert_eq!(m.scale(), 1.21);
        let mut s = testdata::running();
        s.run.as_mut().unwrap().scale = 1.21;
        m.update(Msg::Snapshot(Arc::new(s)));
        assert_eq!(m.scale_asked, None, "seen in the snapshot");
        assert_eq!(press(&mut m, '-'), Some(Action::Scale(1.089)));
        // A refused change falls back to the master's scale.
        m.update(Msg::Replied(Asked::Scale, Err("no run".into())));
        assert_eq!(m.scale(), 1.21);
        let mut m = model_with(testdata::waiting());
        assert_eq!(press(&mut m, '+'), None, "nothing to scale");
    }

    #[test]
    fn tab_cycles_views_that_exist_and_help_toggles() {
        let mut m = model_with(testdata::running());
        let mut seen = vec![m.view];
        for _ in 0..5 {
            m.update(Msg::Key(Key::Tab));
            seen.push(m.view);
        }
        assert_eq!(
            seen,
            [
                View::Overview,
                View::Requests,
                View::Workers,
                View::Charts,
                View::Failures,
                View::Overview
            ]
        );
        m.update(Msg::Key(Key::BackTab));
        assert_eq!(m.view, View::Failures);
        press(&mut m, '2');
        assert_eq!(m.view, View::Requests);
        press(&mut m, '?');
        assert!(m.help);
        assert_eq!(
            press(&mut m, 's'),
            None,
            "a key closes the help and does nothing else"
        );
        assert!(!m.help);
        // Kind views join the cycle when their data arrives.
        let mut m = model_with(testdata::llm());
        assert!(m.views().contains(&View::Llm));
        press(&mut m, '6');
        assert_eq!(m.view, View::Llm);
        m.update(Msg::Snapshot(Arc::new(testdata::running())));
        assert_eq!(m.view, View::Overview, "the LLM view left with its data");
    }

    #[test]
    fn q_stops_the_run_then_quits_when_it_has_finished() {
        let mut m = model_with(testdata::waiting());
        assert_eq!(press(&mut m, 'q'), Some(Action::Quit), "nothing to stop");
        let mut m = model_with(testdata::running());
        assert_eq!(press(&mut m, 'q'), Some(Action::Stop(7)));
        assert_eq!(m.quitting, Some(7));
        let mut stopping = testdata::running();
        stopping.run.as_mut().unwrap().state = RunState::Stopping;
        assert_eq!(m.update(Msg::Snapshot(Arc::new(stopping))), None);
        assert_eq!(
            m.update(Msg::Snapshot(Arc::new(testdata::finished()))),
            Some(Action::Quit)
        );
        // A second q does not wait.
        let mut m = model_with(testdata::running());
        m.update(Msg::Key(Key::CtrlC));
        assert_eq!(press(&mut m, 'q'), Some(Action::Quit));
        // A signal quits like q.
        let mut m = model_with(testdata::running());
        assert_eq!(m.update(Msg::Interrupted), Some(Action::Stop(7)));
    }

    #[test]
    fn history_takes_one_point_per_interval_and_rates_counters() {
        let mut m = Model::new(String::new(), None);
        for i in 1..=3u64 {
            let mut s = testdata::llm();
            let run = s.run.as_mut().unwrap();
            run.intervals = i;
            run.elapsed_s = i as f64;
            run.total.bytes = 1000 * i;
            run.total.counters.insert("output_tokens".into(), 500 * i);
            // Two publications in the same interval make one point.
            m.update(Msg::Snapshot(Arc::new(s.clone())));
            m.update(Msg::Snapshot(Arc::new(s)));
        }
        assert_eq!(m.history.len(), 3);
        assert_eq!(m.history[2].bytes_per_s, 1000.0);
        assert_eq!(m.rates["Aggregated"]["output_tokens"], 500.0);
        // A new run starts a new history.
        let mut s = testdata::llm();
        s.run.as_mut().unwrap().id = 99;
        s.run.as_mut().unwrap().intervals = 1;
        m.update(Msg::Snapshot(Arc::new(s)));
        assert_eq!(m.history.len(), 1);
        assert!(m.rates.is_empty());
    }

    #[test]
    fn a_finished_run_shows_its_rates_over_the_whole_run() {
        let mut m = Model::new(String::new(), None);
        for i in 1..=2u64 {
            let mut s = testdata::llm();
            let run = s.run.as_mut().unwrap();
            run.intervals = i;
            run.elapsed_s = i as f64;
            run.total.counters.insert("output_tokens".into(), 500 * i);
            m.update(Msg::Snapshot(Arc::new(s)));
        }
        // The last interval ran fast: its rates are not the run's.
        let mut s = testdata::llm();
        let run = s.run.as_mut().unwrap();
        run.state = RunState::Finished;
        run.intervals = 3;
        run.elapsed_s = 4.0;
        run.total.requests = 80;
        run.total.rps = 90.0;
        run.total.bytes = 4000;
        run.total.counters.insert("output_tokens".into(), 8000);
        m.update(Msg::Snapshot(Arc::new(s)));
        assert_eq!(m.rates["Aggregated"]["output_tokens"], 2000.0);
        assert_eq!(m.rates["Aggregated"]["bytes"], 1000.0);
        let run = m.run().unwrap();
        assert_eq!(rps(run, &run.total), 20.0);
        // While it ran, req/s was the last interval's.
        let running = testdata::llm();
        let run = running.run.as_ref().unwrap();
        assert_eq!(rps(run, &run.total), run.total.rps);
    }

    #[test]
    fn connections_line_only_where_connections_are_counted() {
        let s = crate::tui::testdata::https();
        let run = s.run.as_ref().unwrap();
        assert_eq!(
            connections_line(&run.specs, &run.total).as_deref(),
            Some("connections: 50 new · 6,050 reused (99.2% reused)")
        );
        assert_eq!(
            connections_line(&run.specs, &run.names[1]).as_deref(),
            Some("connections: 10 new · 970 reused (99.0% reused)")
        );
        let plain = crate::tui::testdata::running();
        let plain = plain.run.unwrap();
        assert_eq!(connections_line(&plain.specs, &plain.total), None);
    }

    #[test]
    fn history_is_bounded() {
        let mut m = Model::new(String::new(), None);
        for i in 1..=(HISTORY as u64 + 50) {
            let mut s = testdata::running();
            s.run.as_mut().unwrap().intervals = i;
            s.run.as_mut().unwrap().elapsed_s = i as f64;
            m.update(Msg::Snapshot(Arc::new(s)));
        }
        assert_eq!(m.history.len(), HISTORY);
        assert_eq!(m.history.front().unwrap().t, 51.0);
        m.update(Msg::Logs(
            (0..LOG_LINES + 5).map(|i| i.to_string()).collect(),
        ));
        assert_eq!(m.logs.len(), LOG_LINES);
        assert_eq!(m.logs.front().unwrap(), "5");
    }

    #[test]
    fn priority_cells_come_from_names() {
        let s = testdata::priority();
        let cells = priority_cells(s.run.as_ref().unwrap());
        assert_eq!(cells.len(), 8);
        let t2_relaxed = cells.iter().find(|c| c.tier == 2 && c.class == 2).unwrap();
        assert_eq!((t2_relaxed.requests, t2_relaxed.slo_met), (500, Some(470)));
        // Names that are not a tier × class stay out of the grid.
        let r = testdata::running();
        assert!(priority_cells(r.run.as_ref().unwrap()).is_empty());
    }
}
