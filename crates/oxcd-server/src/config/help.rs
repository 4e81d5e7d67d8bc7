//! `--help`: generated from the flag table, so it lists exactly what oxcd knows.

use std::fmt::Write;

use super::table::{FlagSpec, Handling, FLAGS};

/// The help text.
pub(super) fn text() -> String {
    let mut out = String::from(
        "oxcd: an etcd v3 compatible, strongly consistent key-value store\n\n\
         Usage: oxcd [flags]\n\
         \x20      oxcd import --help    (a new data dir from etcd's data)\n\n\
         Flags take etcd's syntax (--name value, --name=value, -name=value; a bool flag alone\n\
         means true). Every flag can also be set as ETCD_<NAME> (upper case, '-' as '_').\n\n\
         Flags oxcd implements:\n",
    );
    for f in FLAGS {
        if let Handling::Implemented { default, help } = f.handling {
            let default = if default.is_empty() {
                String::new()
            } else {
                format!(" (default {default:?})")
            };
            let _ = writeln!(out, "  --{}{}\n      {help}{default}", f.name, origin(f));
        }
    }
    out.push_str(
        "\netcd flags oxcd refuses unless set to the value shown (ignoring them would mislead):\n",
    );
    for f in FLAGS {
        if let Handling::Refused { accepted, why } = f.handling {
            let _ = writeln!(
                out,
                "  --{} [{}]{}\n      {why}",
                f.name,
                accepted.join("|"),
                origin(f)
            );
        }
    }
    out.push_str("\netcd flags oxcd accepts with a warning (they have no effect):\n");
    for f in FLAGS {
        match f.handling {
            Handling::Ignored { why, .. } => {
                let _ = writeln!(out, "  --{}{}\n      {why}", f.name, origin(f));
            }
            Handling::Retired => {
                let _ = writeln!(out, "  --{}\n      no longer supported by etcd", f.name);
            }
            Handling::Implemented { .. } | Handling::Refused { .. } => {}
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// Which etcd releases have the flag, when not both.
fn origin(f: &FlagSpec) -> &'static str {
    match (f.etcd.in_34(), f.etcd.in_35()) {
        (true, true) => "",
        (true, false) => "  (etcd 3.4)",
        (false, true) => "  (etcd 3.5)",
        (false, false) => "  (oxcd only)",
    }
}
