//! The latency histogram out of a run and back in: the standard HdrHistogram encodings, so
//! other tools read our files and runs from several processes merge exactly.
//!
//! - V2 compressed, base64: the form embedded in the JSON report (and in interval logs);
//!   [`decode`] reads it back for `merge`.
//! - The percentile distribution (`.hgrm`): the table wrk2's `-U` prints and the
//!   HdrHistogram plotter reads; values in milliseconds, as wrk2 writes them.
//! - The interval log (`.hlog`): what HdrHistogram's log tools (HistogramLogProcessor,
//!   HdrHistogramVisualizer) read.

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

/// The histogram as base64 of its V2 compressed encoding.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing into a Vec cannot fail for a histogram of u64 counts.
    let _ = V2DeflateSerializer::new().serialize(h, &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads back what [`encode`] (or any HdrHistogram implementation) wrote.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("histogram does not decode: {e:?}"))
}

/// Writes the percentile distribution of a microsecond histogram, in milliseconds, in the
/// layout of HdrHistogram's `outputPercentileDistribution` (5 ticks per half distance).
pub fn write_percentiles(h: &Histogram<u64>, out: &mut dyn Write) -> io::Result<()> {
    const SCALE: f64 = 1000.0; // microseconds recorded, milliseconds written
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / SCALE;
        if q < 1.0 {
            writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
        }
    }
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / SCALE,
        h.stdev() / SCALE
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    )
}

/// Writes an interval log holding the whole measured window as one interval: `corrected`
/// untagged, `uncorrected` (open loop) tagged `uncorrected`. Values stay in microseconds
/// (the max column is divided into milliseconds for reading).
pub fn write_log(
    corrected: &Histogram<u64>,
    uncorrected: Option<&Histogram<u64>>,
    started: SystemTime,
    offset: Duration,
    length: Duration,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut out = out;
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("echoloop-bench latency, microseconds")
        .with_start_time(started)
        .with_base_time(started)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut out, &mut serializer)?;
    let fail = |e| io::Error::other(format!("{e:?}"));
    log.write_histogram(corrected, offset, length, None)
        .map_err(fail)?;
    if let Some(h) = uncorrected {
        log.write_histogram(h, offset, length, Tag::new("uncorrected"))
            .map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn encoding_round_trips_exactly() {
        let mut h = new_histogram();
        for v in [1, 36, 36, 578, 10_000, 3_600_000] {
            h.record(v).unwrap();
        }
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back, h);
        assert!(decode("not base64!").is_err());
        assert!(decode("aGVsbG8=").is_err(), "base64, but not a histogram");
    }

    #[test]
    fn percentile_table_ends_at_the_max_with_the_total() {
        let mut h = new_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let mut out = Vec::new();
        write_percentiles(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        let last = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        let cols: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(cols, ["1.000", "1.000000000000", "1000"]);
        assert!(text.contains("Total count    =         1000]"));
    }

    #[test]
    fn interval_log_is_readable_back() {
        use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
        let mut h = new_histogram();
        h.record(42).unwrap();
        let mut out = Vec::new();
        let t = SystemTime::now();
        write_log(
            &h,
            Some(&h),
            t,
            Duration::ZERO,
            Duration::from_secs(2),
            &mut out,
        )
        .unwrap();
        let hists: Vec<_> = IntervalLogIterator::new(&out)
            .filter_map(|e| match e {
                Ok(LogEntry::Interval(i)) => Some(i.encoded_histogram().to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(hists.len(), 2);
        assert_eq!(decode(&hists[0]).unwrap(), h);
    }
}
