//! `echoloop --generate man|bash|zsh|fish`: the man page and shell completions, rendered from
//! the same clap definition as `--help`, so packagers never ship documentation that drifted.
//!
//! Lives in the binary (feature `cli`): the server library knows nothing of clap.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, Generated};

/// Writes the requested artefact to `out`.
pub fn generate(what: Generated, out: &mut dyn Write) -> io::Result<()> {
    let mut command = Cli::command();
    let shell = match what {
        Generated::Man => return clap_mangen::Man::new(command).render(out),
        Generated::Bash => Shell::Bash,
        Generated::Zsh => Shell::Zsh,
        Generated::Fish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut command, "echoloop", out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(what: Generated) -> String {
        let mut out = Vec::new();
        generate(what, &mut out).expect("render into memory");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn man_page_is_roff_with_the_flags_exit_codes_and_signals() {
        let page = render(Generated::Man);
        assert!(
            page.starts_with(".ie") || page.contains(".TH echoloop"),
            "{page}"
        );
        assert!(page.contains("max\\-pending"), "flags in the man page");
        assert!(
            page.contains("SIGUSR1") && page.contains("130"),
            "after-help text too"
        );
    }

    #[test]
    fn completions_name_the_flags_for_each_shell() {
        for (what, marker) in [
            (Generated::Bash, "complete -F"),
            (Generated::Zsh, "#compdef echoloop"),
            (Generated::Fish, "complete -c echoloop"),
        ] {
            let script = render(what);
            assert!(script.contains(marker), "{what:?}: {marker}");
            assert!(script.contains("drain-timeout"), "{what:?} completes flags");
        }
    }
}
