//! `regfs(8)`, written from the command line's own definitions (clap's
//! `Command`), so the manual says what `--help` says: `regfs manpage`
//! prints it in roff; the Debian package ships it (`scripts/package`).

use std::fmt::Write as _;

/// Escapes text for roff: backslashes, and a leading `.` or `'`.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    t.lines()
        .map(|l| {
            if l.starts_with(['.', '\'']) {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn options(out: &mut String, cmd: &clap::Command) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let name = match (arg.get_short(), arg.get_long()) {
            (Some(s), Some(l)) => format!("\\fB\\-{s}\\fR, \\fB\\-\\-{}\\fR", roff(l)),
            (None, Some(l)) => format!("\\fB\\-\\-{}\\fR", roff(l)),
            (Some(s), None) => format!("\\fB\\-{s}\\fR"),
            (None, None) => format!("\\fI{}\\fR", id.to_ascii_uppercase()),
        };
        let value = arg
            .get_value_names()
            .filter(|_| arg.get_long().is_some() || arg.get_short().is_some())
            .and_then(|v| v.first().map(|v| format!(" \\fI{v}\\fR")))
            .unwrap_or_default();
        let mut help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| roff(&h.to_string()))
            .unwrap_or_default();
        if !help.ends_with(['.', ')']) {
            help.push('.');
        }
        let default = arg
            .get_default_values()
            .first()
            .map(|d| format!(" Default: {}.", roff(&d.to_string_lossy())))
            .unwrap_or_default();
        let _ = writeln!(out, ".TP\n{name}{value}\n{help}{default}");
    }
}

/// One command's section: its name, its text and its options.
fn command(out: &mut String, name: &str, sub: &clap::Command) {
    let _ = writeln!(out, ".SS {name}");
    let text = sub
        .get_long_about()
        .or(sub.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "{}", roff(&text).replace("\n\n", "\n.PP\n"));
    options(out, sub);
}

/// The manual page of `cmd` (the top-level command), in roff.
pub fn render(cmd: &clap::Command) -> String {
    let name = cmd.get_name();
    let mut out = String::new();
    let _ = writeln!(
        out,
        ".TH {} 8 \"\" \"{name} {}\" \"System Administration\"",
        name.to_ascii_uppercase(),
        cmd.get_version().unwrap_or("")
    );
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let _ = writeln!(out, ".SH NAME\n{name} \\- {}", roff(&about));
    let _ = writeln!(out, ".SH SYNOPSIS");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let _ = writeln!(
            out,
            ".B {name} {}\n[\\fIOPTIONS\\fR]{}\n.br",
            sub.get_name(),
            sub.get_arguments()
                .filter(|a| a.is_positional())
                .map(|a| format!(" \\fI{}\\fR", a.get_id().as_str().to_ascii_uppercase()))
                .collect::<String>()
        );
    }
    let _ = writeln!(
        out,
        ".B {name}\n\\fICONFIG\\fR \\fIMOUNTPOINT\\fR [\\fB\\-o\\fR \\fIOPTIONS\\fR]"
    );
    let long = cmd.get_long_about().map(|a| a.to_string()).unwrap_or(about);
    let _ = writeln!(
        out,
        ".SH DESCRIPTION\n{}",
        roff(&long).replace("\n\n", "\n.PP\n")
    );
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        let _ = writeln!(
            out,
            ".PP\n{}",
            roff(&after.to_string()).replace("\n\n", "\n.PP\n")
        );
    }
    let _ = writeln!(out, ".SH COMMANDS");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command(&mut out, sub.get_name(), sub);
        // Subcommands of their own (`snapshot create`, …), each in full.
        for inner in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{} {}", sub.get_name(), inner.get_name());
            command(&mut out, &name, inner);
        }
    }
    let _ = writeln!(
        out,
        ".SH FILES\n.TP\n/etc/regfs/regfs.toml\nthe configuration (every key is described in the example the package installs)\n.TP\n/var/lib/regfs\ngenerations, metadata files, the lock and the control socket (state_dir)\n.TP\n/var/cache/regfs\nverified artifacts, content\\-addressed (cache_dir)\n.TP\n/usr/share/regfs\nthe nginx and rsyncd snippets that export a mount"
    );
    let _ = writeln!(
        out,
        ".SH SEE ALSO\n.BR mount (8),\n.BR fstab (5),\n.BR systemd.mount (5),\n.BR nginx (8),\n.BR rsyncd.conf (5)"
    );
    out
}
