//! The counter table: one declaration per counter yields its field, its merge, its `key=value`
//! pair, its place in the human summary and its Prometheus series.
//!
//! [`Stats`](crate::Stats) and [`ServiceStats`](crate::ServiceStats) are each declared with
//! `counters!`: one line per counter, in the order of the stats line.
//!
//! ```text
//! /// Help text (the field's doc, and the metric's HELP).
//! key: Kind Unit, "summary line", "label", metric;
//! ```
//!
//! - `Kind` is `Counter` (only grows) or `Gauge` (a level, read now). Both are summed when
//!   reactors merge: two reactors' pending bytes add up like their bytes in.
//! - `Unit` is `Count` or `Bytes` (the human summary prints bytes in binary units).
//! - The summary line and label place it in the human summary: counters that share a line are
//!   printed together, as `label value`, the zeros left out.
//! - The metric says where it goes on the `/metrics` page ([`Metric`]): a family of its own,
//!   a family split by a label (this counter is the total; see [`Metric::Split`]), one series
//!   of such a family, or nowhere.
//!
//! From that the macro writes the struct (plain `u64` fields, no atomics: the loop is
//! single-threaded), `add_counters` (the sum used by `merge`), `COUNTERS` (the descriptions, in
//! order) and `counters()`, which pairs each description with its value now. Everything that
//! prints counters walks `counters()`, so a new counter is one line in its table.

/// Whether a value only grows or is a level read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Only grows, from zero at start.
    Counter,
    /// A level at the moment it is read (connections open, bytes pending).
    Gauge,
}

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unit {
    /// Events or things: connections, datagrams, pauses.
    Count,
    /// Bytes.
    Bytes,
}

/// Where a counter goes on the Prometheus page. Names are without the `echoloop_` prefix and,
/// for counters, without the `_total` suffix (the renderer adds both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Metric {
    /// Not on the page (it is the sum of other series, or not worth a series).
    None,
    /// A family of its own, one series per reactor.
    Own(&'static str),
    /// This counter is the total of a family split by `label`: the family's series are the
    /// counters declared [`Metric::Part`] of it, plus, when `rest` names a value, one series
    /// for what the parts leave of the total.
    Split {
        /// The family's name.
        family: &'static str,
        /// The label that splits it (`reason`, `kind`).
        label: &'static str,
        /// The label value of the remainder, if the parts do not cover the total.
        rest: Option<&'static str>,
    },
    /// One series of a split family: the family's label has this value.
    Part {
        /// The family's name.
        family: &'static str,
        /// The label's value for this series.
        value: &'static str,
    },
}

/// A family of its own.
pub(crate) const fn own(family: &'static str) -> Metric {
    Metric::Own(family)
}

/// The total of a family split by `label`.
pub(crate) const fn split(family: &'static str, label: &'static str) -> Metric {
    Metric::Split {
        family,
        label,
        rest: None,
    }
}

/// The total of a family split by `label`, with a series `label=rest` for what its parts
/// leave.
pub(crate) const fn split_rest(
    family: &'static str,
    label: &'static str,
    rest: &'static str,
) -> Metric {
    Metric::Split {
        family,
        label,
        rest: Some(rest),
    }
}

/// One series of the split family `family`.
pub(crate) const fn part(family: &'static str, value: &'static str) -> Metric {
    Metric::Part { family, value }
}

/// The description of one counter: everything but its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counter {
    /// The key in the `key=value` line (and the struct field's name).
    pub key: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Count or bytes.
    pub unit: Unit,
    /// The line of the human summary it is printed on.
    pub line: &'static str,
    /// Its name on that line.
    pub label: &'static str,
    /// Its place on the Prometheus page.
    pub metric: Metric,
    /// The doc comment, as written (`help` trims it).
    pub(crate) doc: &'static str,
}

impl Counter {
    /// One sentence on what it counts: the field's doc comment, on one line.
    pub fn help(&self) -> &'static str {
        self.doc.trim()
    }
}

/// Declares a struct of counters from a table; see the module doc.
macro_rules! counters {
    (
        $(#[$struct_meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$extra_meta:meta])*
                pub $extra:ident: $extra_ty:ty,
            )*
        }
        counters {
            $(
                $(#[doc = $doc:literal])*
                $key:ident: $kind:ident $unit:ident, $line:literal, $label:literal, $metric:expr;
            )*
        }
    ) => {
        $(#[$struct_meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $name {
            $(
                $(#[$extra_meta])*
                pub $extra: $extra_ty,
            )*
            $(
                $(#[doc = $doc])*
                pub $key: u64,
            )*
        }

        impl $name {
            /// Every counter's description, in the order of the stats line.
            pub const COUNTERS: &'static [$crate::counters::Counter] = &[
                $(
                    $crate::counters::Counter {
                        key: stringify!($key),
                        kind: $crate::counters::Kind::$kind,
                        unit: $crate::counters::Unit::$unit,
                        line: $line,
                        label: $label,
                        metric: $metric,
                        doc: concat!($($doc),*),
                    },
                )*
            ];

            /// Each counter's description with its value, in the order of the stats line.
            pub fn counters(&self) -> impl Iterator<Item = (&'static $crate::counters::Counter, u64)> {
                Self::COUNTERS.iter().zip([$(self.$key),*])
            }

            /// Adds `other`'s counters to these (gauges too: levels of separate reactors add
            /// up).
            fn add_counters(&mut self, other: &Self) {
                $( self.$key += other.$key; )*
            }
        }
    };
}

pub(crate) use counters;
