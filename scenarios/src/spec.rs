//! What a driver's figures are: for each histogram and counter a driver records besides
//! latency, its name, what it measures, its unit, and how `/metrics`, the end-of-run table,
//! `summary.json` and the terminal UI show it.
//!
//! Drivers return these from [`crate::Driver::metrics`] and [`crate::Driver::counters`]; the
//! master gets a run's [`Specs`] from its kind's registry entry ([`crate::kinds`]) and every
//! sink iterates them, so a new figure of a driver shows everywhere without an edit in the
//! master. Plain data: no formatting here (that is [`crate::report`] and the master's sinks).

/// What a figure measures, so sinks can group figures of one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// New and reused connections, connect and TLS handshake times.
    Connection,
    /// When an LLM's answer arrives: first token, per token, between tokens.
    LlmTiming,
    /// Tokens sent and received, and how they were counted.
    Tokens,
    /// Requests that met a service level objective (goodput, priority classes).
    Slo,
    /// Whole-file downloads: time to first byte, per-client throughput.
    Download,
    /// Arrivals of a schedule: drawn, dropped.
    Schedule,
}

/// The unit a figure is recorded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A time, µs (histograms).
    Micros,
    /// A rate, kB/s (1000 bytes per second; histograms).
    KilobytesPerSecond,
    /// A count of events (counters).
    Count,
    /// A count of tokens (counters).
    Tokens,
}

/// The standard figure a spec is, where a report or another tool's format has a fixed place
/// for it (ai-on-gke's "tokens sent", the TUI's TTFT line). Sinks look figures up by role,
/// never by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Time to the first token of an answer.
    TimeToFirstToken,
    /// Time per output token after the first.
    TimePerOutputToken,
    /// Time between two streamed chunks.
    InterTokenLatency,
    /// Prompt tokens sent.
    InputTokens,
    /// Output tokens received.
    OutputTokens,
    /// Requests that met every objective (goodput).
    GoodRequests,
    /// Time to a response's head.
    TimeToFirstByte,
    /// Bytes per second of one download.
    ClientThroughput,
    /// TCP connect time of a new connection.
    ConnectTime,
    /// TLS handshake time of a new connection.
    TlsHandshakeTime,
    /// Requests that opened a new connection.
    NewConnections,
    /// Requests sent on an open connection.
    ReusedConnections,
    /// Requests that met their class's SLO.
    SloMet,
    /// Requests that missed their class's SLO.
    SloMissed,
    /// Arrivals the schedule drew and handed to the driver.
    Scheduled,
    /// Arrivals the engine dropped (too many in flight).
    Dropped,
}

/// How `/metrics` exports a figure: a histogram (for a driver's metric) or a counter (for a
/// driver's counter) family of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prometheus {
    /// The family's name (`stampede_llm_time_to_first_token_seconds`).
    pub name: &'static str,
    /// The family's help line; figures sharing a family share it.
    pub help: &'static str,
    /// A label telling this figure's series from the others of a shared family
    /// (`kind="new"` under `stampede_connections_total`); `None` for a family of its own.
    pub label: Option<(&'static str, &'static str)>,
}

/// The block of `summary.json` and the section under the end-of-run table that show a
/// figure (built by the driver's [`crate::report::Report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `connections` and the `connections:` line.
    Connections,
    /// `llm` and the `LLM (ms)` section.
    Llm,
    /// The download figures of `metrics` and the `Downloads` section.
    Downloads,
}

/// One histogram or counter a driver records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    /// The name it is recorded and reported under (`ttft`, `connections_new`).
    pub name: &'static str,
    /// What it measures.
    pub family: Family,
    /// One sentence for readers of reports and dashboards.
    pub help: &'static str,
    /// Its recorded unit.
    pub unit: Unit,
    /// The standard figure it is, if any.
    pub role: Option<Role>,
    /// Its own `/metrics` family; `None`: only in `stampede_driver_events_total` (counters)
    /// or not exported (histograms).
    pub prometheus: Option<Prometheus>,
    /// The summary block and table section that show it, if any (every figure is also in
    /// `summary.json`'s per-request `metrics` or `counters`).
    pub section: Option<Section>,
    /// Its column header in the TUI's tables (`conn`, `TTFT`), if it has a column.
    pub tui: Option<&'static str>,
}

impl MetricSpec {
    /// A figure called `name` of `family`, in `unit`, with nothing more: the fields after
    /// these are set with struct update syntax.
    pub const fn new(
        name: &'static str,
        family: Family,
        unit: Unit,
        help: &'static str,
    ) -> MetricSpec {
        MetricSpec {
            name,
            family,
            help,
            unit,
            role: None,
            prometheus: None,
            section: None,
            tui: None,
        }
    }
}

/// The names of `specs`, in order (the recorder's index order).
pub fn names(specs: &[MetricSpec]) -> Vec<&'static str> {
    specs.iter().map(|s| s.name).collect()
}

/// A scenario kind's figures: its driver's histograms and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Specs {
    /// Histograms besides latency, in the driver's order.
    pub metrics: &'static [MetricSpec],
    /// Counters besides requests, failures and bytes, in the driver's order.
    pub counters: &'static [MetricSpec],
}

impl Specs {
    /// No figures (an unknown kind).
    pub const NONE: Specs = Specs {
        metrics: &[],
        counters: &[],
    };

    /// The histogram called `name`.
    pub fn metric(&self, name: &str) -> Option<&'static MetricSpec> {
        self.metrics.iter().find(|s| s.name == name)
    }

    /// The counter called `name`.
    pub fn counter(&self, name: &str) -> Option<&'static MetricSpec> {
        self.counters.iter().find(|s| s.name == name)
    }

    /// The histogram or counter that is `role`.
    pub fn role(&self, role: Role) -> Option<&'static MetricSpec> {
        self.metrics
            .iter()
            .chain(self.counters)
            .find(|s| s.role == Some(role))
    }

    /// The name of the figure that is `role`, if the kind records one.
    pub fn name_of(&self, role: Role) -> Option<&'static str> {
        self.role(role).map(|s| s.name)
    }

    /// Whether any figure is of `family`.
    pub fn has(&self, family: Family) -> bool {
        self.metrics
            .iter()
            .chain(self.counters)
            .any(|s| s.family == family)
    }
}
