//! The whole command tree: every argument documented, and completions and man pages
//! generated for every command.

use clap::CommandFactory as _;
use mesh_ctl::cli_docs::{self, SHELLS};

use super::Cli;

#[test]
fn the_command_tree_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn every_flag_and_positional_has_help() {
    let missing = cli_docs::missing_help(&Cli::command());
    assert!(
        missing.is_empty(),
        "without help text:\n{}",
        missing.join("\n")
    );
}

#[test]
fn completions_name_every_subcommand_in_every_shell() {
    let tree = cli_docs::walk(&Cli::command());
    assert!(
        tree.len() > 20,
        "the walk found only {} commands",
        tree.len()
    );
    for shell in SHELLS {
        let script = String::from_utf8(cli_docs::completion(&Cli::command(), shell))
            .expect("completion scripts are text");
        assert!(
            !script.trim().is_empty(),
            "{shell}: empty completion script"
        );
        for (path, _) in &tree {
            let leaf = path.last().expect("paths are not empty");
            assert!(
                script.contains(leaf.as_str()),
                "{shell}: the completion script never names `{}`",
                path.join(" ")
            );
        }
    }
}

#[test]
fn every_command_has_a_man_page_naming_it() {
    let tree = cli_docs::walk(&Cli::command());
    let pages = cli_docs::man_pages(&Cli::command()).expect("rendering man pages");
    assert_eq!(pages.len(), tree.len(), "one page per command");
    for ((path, cmd), (file, roff)) in tree.iter().zip(&pages) {
        assert_eq!(*file, format!("{}.1", path.join("-")));
        let text = String::from_utf8_lossy(roff);
        assert!(text.contains(".TH"), "{file}: no title header");
        assert!(
            text.contains(&path.join("\\-")) || text.contains(&path.join("-")),
            "{file} does not name its command:\n{text}"
        );
        for arg in cmd.get_arguments().filter_map(|a| a.get_long()) {
            assert!(
                text.contains(&arg.replace('-', "\\-")),
                "{file}: --{arg} is not documented"
            );
        }
    }
}
