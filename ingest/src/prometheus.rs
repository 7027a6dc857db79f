//! Prometheus' text exposition format, written once for every vitalflow process: ingest's `/metrics`
//! and the scheduler process's (`vitalflow_scheduler::metrics`) both render through [`Exposition`].

use std::fmt::Write;

/// A `/metrics` page being written: metric families, each a `# HELP` and `# TYPE` line and its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Exposition {
        Exposition { out: String::with_capacity(4096) }
    }

    /// Starts the family `name` of `kind` (`counter`, `gauge`, `histogram`, `summary`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Exposition {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample: `name{labels} value`; `labels` are written as given (already `k="v"` pairs).
    pub fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) -> &mut Exposition {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
        self
    }

    /// A counter family with a single unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Exposition {
        self.family(name, "counter", help).sample(name, "", value)
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Escapes a Prometheus label value.
pub fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
