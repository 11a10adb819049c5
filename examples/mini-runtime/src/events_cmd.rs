//! `events`: a container's OOM notifications and statistics, one JSON object a
//! line, as runc 1.1 prints them.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use oci_runtime::cgroups::events::Event;
use oci_runtime::{Error, Runtime};

use crate::oci_cmd::CliError;

/// Arguments of `events`, as runc names them.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Container id.
    id: String,
    /// Print the container's statistics once, then exit.
    #[arg(long)]
    stats: bool,
    /// How often to print statistics, as Go writes durations (5s, 500ms, 1m30s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    interval: Duration,
}

/// Prints events until the container stops (or, with `--stats`, its statistics
/// once). A failed statistics read is handed to `warn` and the loop goes on, as
/// in runc.
pub(crate) fn run(rt: &Runtime, a: &EventsArgs, warn: impl Fn(Error)) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    if a.stats {
        let stats = rt.stats(&a.id)?;
        return print(&mut out, &Event::Stats(Box::new(stats)).to_runc_json(&a.id));
    }
    for ev in rt.events(&a.id, Some(a.interval))? {
        match ev {
            Ok(ev) => print(&mut out, &ev.to_runc_json(&a.id))?,
            Err(e) => warn(e),
        }
    }
    Ok(())
}

/// One line, flushed at once: a reader follows the stream as it comes.
fn print(out: &mut impl Write, line: &str) -> Result<(), CliError> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|source| CliError::Io {
            operation: "writing",
            path: "stdout".into(),
            source,
        })
}

/// A duration as Go's `time.ParseDuration` reads it: decimal numbers each with
/// a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), like `1m30s` or `1.5s`.
/// The interval must be positive, as runc requires.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 5s, 500ms or 1m30s");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        // Whole and fractional digits apart, so `1.5s` is exact.
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(bad());
        }
        let digits = |d: &str| d.parse::<u128>().map_err(|_| bad());
        let whole = if whole.is_empty() { 0 } else { digits(whole)? };
        let mut part = whole.checked_mul(unit).ok_or_else(bad)?;
        if !frac.is_empty() {
            let scale = 10u128.checked_pow(frac.len() as u32).ok_or_else(bad)?;
            part += digits(frac)?.checked_mul(unit).ok_or_else(bad)? / scale;
        }
        nanos = nanos.checked_add(part).ok_or_else(bad)?;
        rest = tail;
    }
    if nanos == 0 {
        return Err("duration interval must be greater than 0".into());
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        for bad in ["", "5", "s", "5x", "1..5s", "-1s", "0s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
