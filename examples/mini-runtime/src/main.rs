//! `mini-runtime`: a runc-compatible OCI runtime and image commands,
//! composed only from the crates of this workspace.

mod events_cmd;
mod image_cmd;
mod oci_cmd;
mod serve;
mod terminal;
mod update_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// A small container runtime built from the oci-runtime and image-store crates.
#[derive(Debug, Parser)]
#[command(
    name = "mini-runtime",
    version,
    about,
    arg_required_else_help = true,
    subcommand_required = true
)]
struct Cli {
    #[command(flatten)]
    oci: oci_cmd::GlobalOpts,
    #[command(flatten)]
    store: image_cmd::StoreOpts,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Oci(oci_cmd::OciCommand),
    /// Manage images in the local store.
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Build a small image offline, import, bundle and run it, then clean up.
    Demo,
    /// Serve the CRI (RuntimeService and ImageService) on a unix socket.
    Serve(serve::ServeArgs),
    /// The per-container monitor `serve` starts (not for use by hand).
    #[command(hide = true)]
    Monitor,
    /// A pod's pause process, started by `serve` (not for use by hand).
    #[command(name = "pod-infra", hide = true)]
    PodInfra,
}

fn main() {
    // MINI_RUNTIME_TIMELINE=FILE: where this run's start time goes (see
    // oci_runtime::timeline and benches/start_breakdown.py).
    let timeline = std::env::var_os("MINI_RUNTIME_TIMELINE");
    if timeline.is_some() && oci_runtime::timeline::enable().is_ok() {
        oci_runtime::timeline::mark("main entered (exec, dynamic loading, Rust start-up)");
    }
    // `--version` as runc prints it (podman and containerd show it to users).
    let version = format!(
        "version {}\nspec: {}",
        env!("CARGO_PKG_VERSION"),
        oci_runtime::OCI_VERSION
    );
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Whether --store and --root were given (serve's config file yields to them).
    let mut given = (false, false);
    let cli = match parse_lifecycle(&argv) {
        Some(cli) => cli,
        None => {
            let matches = Cli::command().long_version(version).get_matches_from(&argv);
            let on_command_line = |id: &str| {
                let here = matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
                let below = matches.subcommand().is_some_and(|(_, m)| {
                    m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
                });
                here || below
            };
            given = (on_command_line("store"), on_command_line("root"));
            Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
        }
    };
    oci_runtime::timeline::mark("command line parsed");
    let code = match cli.command {
        None => 0,
        Some(Command::Oci(c)) => oci_cmd::run(&cli.oci, c),
        Some(Command::Image(c)) => image_cmd::run(&cli.store, c),
        Some(Command::Demo) => image_cmd::demo(),
        Some(Command::Monitor) => oci_runtime::monitor::monitor_main(),
        Some(Command::PodInfra) => serve::pause(),
        Some(Command::Serve(args)) => serve::run(
            args,
            serve::Globals {
                store: (cli.store.path().to_path_buf(), given.0),
                root: (cli.oci.root().to_path_buf(), given.1),
            },
        ),
    };
    if let Some(path) = timeline {
        write_timeline(&path);
    }
    std::process::exit(code)
}

/// Parses the lifecycle commands runc's callers run for every container
/// (`create`, `start`, `state`, `kill`, `delete`, `run`) with a command line
/// holding only that subcommand: building all of them costs a third of a
/// millisecond per process here. `None` for anything else (other commands,
/// help, version, an option it does not know, or an error, whose message the
/// full parser then gives), which goes to the full parser.
fn parse_lifecycle(argv: &[std::ffi::OsString]) -> Option<Cli> {
    use clap::{Args, Command as ClapCommand};
    use oci_cmd::{CreateArgs, DeleteArgs, IdArgs, KillArgs, OciCommand, RunArgs};
    let globals = image_cmd::StoreOpts::augment_args(oci_cmd::GlobalOpts::augment_args(
        ClapCommand::new("mini-runtime"),
    ));
    // The subcommand is the first word that is neither a global option nor
    // the value of one.
    let mut name = None;
    let mut rest = argv.iter().skip(1);
    while let Some(a) = rest.next() {
        let a = a.to_str()?;
        let Some(long) = a.strip_prefix("--") else {
            if a.starts_with('-') {
                return None;
            }
            name = Some(a);
            break;
        };
        let (long, inline_value) = match long.split_once('=') {
            Some((l, _)) => (l, true),
            None => (long, false),
        };
        let arg = globals
            .get_arguments()
            .find(|g| g.get_long() == Some(long))?;
        let num = arg.get_num_args().unwrap_or_default();
        if inline_value || !arg.get_action().takes_values() {
            continue;
        }
        // An optional value (`--rootless [VALUE]`) is ambiguous here.
        if num.min_values() == 0 {
            return None;
        }
        rest.next()?;
    }
    let sub = ClapCommand::new(name?.to_string());
    let sub = match name? {
        "create" => CreateArgs::augment_args(sub),
        "run" => RunArgs::augment_args(sub),
        "start" | "state" => IdArgs::augment_args(sub),
        "kill" => KillArgs::augment_args(sub),
        "delete" => DeleteArgs::augment_args(sub),
        _ => return None,
    };
    let m = globals.subcommand(sub).try_get_matches_from(argv).ok()?;
    let (n, sm) = m.subcommand()?;
    let command = match n {
        "create" => OciCommand::Create(CreateArgs::from_arg_matches(sm).ok()?),
        "run" => OciCommand::Run(RunArgs::from_arg_matches(sm).ok()?),
        "start" => OciCommand::Start(IdArgs::from_arg_matches(sm).ok()?),
        "state" => OciCommand::State(IdArgs::from_arg_matches(sm).ok()?),
        "kill" => OciCommand::Kill(KillArgs::from_arg_matches(sm).ok()?),
        "delete" => OciCommand::Delete(DeleteArgs::from_arg_matches(sm).ok()?),
        _ => return None,
    };
    Some(Cli {
        oci: oci_cmd::GlobalOpts::from_arg_matches(&m).ok()?,
        store: image_cmd::StoreOpts::from_arg_matches(&m).ok()?,
        command: Some(Command::Oci(command)),
    })
}

/// Appends this run's marks to `path`, one JSON object per line:
/// `{"pid": ..., "marks": [[nanos, pid, name], ...]}`.
fn write_timeline(path: &std::ffi::OsStr) {
    use std::io::Write;
    let marks: Vec<_> = oci_runtime::timeline::marks()
        .into_iter()
        .map(|m| serde_json::json!([m.nanos, m.pid, m.name]))
        .collect();
    let line = serde_json::json!({"pid": std::process::id(), "marks": marks});
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        eprintln!(
            "mini-runtime: writing the timeline to {}: {e}",
            std::path::Path::new(path).display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lifecycle fast path parses exactly as the full parser does, and
    /// leaves everything else to it.
    #[test]
    fn lifecycle_fast_path_matches_the_full_parser() {
        let lines: &[&[&str]] = &[
            &["create", "--bundle", "/b", "--pid-file", "/p", "c1"],
            &[
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format=json",
                "create",
                "-b",
                "/b",
                "c1",
            ],
            &["--root=/r", "--debug", "run", "-d", "--bundle", "/b", "c2"],
            &["--systemd-cgroup", "start", "c3"],
            &["--root", "/r", "state", "c4"],
            &["kill", "c5"],
            &["kill", "--all", "c5", "KILL"],
            &["--store", "/s", "delete", "-f", "c6"],
            &["delete", "c6", "--root", "/late"],
            &["--rootless=true", "state", "c7"],
        ];
        for line in lines {
            let argv: Vec<std::ffi::OsString> = std::iter::once("mini-runtime")
                .chain(line.iter().copied())
                .map(Into::into)
                .collect();
            let fast = parse_lifecycle(&argv).unwrap_or_else(|| panic!("not fast: {line:?}"));
            let full = Cli::from_arg_matches(&Cli::command().get_matches_from(&argv)).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{line:?}");
        }
        let slow: &[&[&str]] = &[
            &["--help"],
            &["--version"],
            &["start"],
            &["start", "--help"],
            &["kill", "a", "b", "c"],
            &["--rootless", "state", "c"],
            &["-x", "state", "c"],
            &["exec", "c", "true"],
            &["list"],
            &["image", "ls"],
            &["--nope", "state", "c"],
        ];
        for line in slow {
            let argv: Vec<std::ffi::OsString> = std::iter::once("mini-runtime")
                .chain(line.iter().copied())
                .map(Into::into)
                .collect();
            assert!(parse_lifecycle(&argv).is_none(), "{line:?}");
        }
    }
}
