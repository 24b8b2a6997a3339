//! Shell completions and man pages, generated from meshctl's clap command tree, so that
//! they always describe the binary that writes them.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use clap::Command;
pub use clap_complete::Shell;

/// The shells `meshctl completion` and `meshctl install` write completions for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Every command in the tree, the root first, each with its full name (`meshctl`,
/// `meshctl identity init`, ...). clap's generated `help` subcommands are left out: they
/// document nothing of ours.
pub fn walk(root: &Command) -> Vec<(Vec<String>, Command)> {
    let mut root = root.clone();
    root.build();
    let mut out = Vec::new();
    visit(&root, vec![root.get_name().to_owned()], &mut out);
    out
}

fn visit(cmd: &Command, path: Vec<String>, out: &mut Vec<(Vec<String>, Command)>) {
    out.push((path.clone(), cmd.clone()));
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" || sub.is_hide_set() {
            continue;
        }
        let mut sub_path = path.clone();
        sub_path.push(sub.get_name().to_owned());
        visit(sub, sub_path, out);
    }
}

/// Arguments (flags and positionals) without help text, as `meshctl model train --epochs`.
pub fn missing_help(root: &Command) -> Vec<String> {
    let mut missing = Vec::new();
    for (path, cmd) in walk(root) {
        for arg in cmd.get_arguments() {
            if arg.is_hide_set() || arg.get_help().is_some() || arg.get_long_help().is_some() {
                continue;
            }
            let name = arg
                .get_long()
                .map_or_else(|| format!("<{}>", arg.get_id()), |long| format!("--{long}"));
            missing.push(format!("{} {name}", path.join(" ")));
        }
        if cmd.get_about().is_none() && path.len() > 1 {
            missing.push(format!("{} (the command itself)", path.join(" ")));
        }
    }
    missing
}

/// The completion script for `shell`.
pub fn completion(root: &Command, shell: Shell) -> Vec<u8> {
    let mut cmd = root.clone();
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// Where completions for `shell` go under an install prefix: the directories each
/// shell's own packages use, so no shell configuration needs editing.
pub fn completion_path(prefix: &Path, shell: Shell, name: &str) -> PathBuf {
    match shell {
        Shell::Zsh => prefix
            .join("share/zsh/site-functions")
            .join(format!("_{name}")),
        Shell::Fish => prefix
            .join("share/fish/vendor_completions.d")
            .join(format!("{name}.fish")),
        _ => prefix.join("share/bash-completion/completions").join(name),
    }
}

/// One man page per command in the tree, as (file name, roff): `meshctl.1`,
/// `meshctl-identity-init.1`, ...
pub fn man_pages(root: &Command) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut pages = Vec::new();
    for (path, cmd) in walk(root) {
        let name = path.join("-");
        let mut roff = Vec::new();
        clap_mangen::Man::new(cmd.display_name(name.clone()).bin_name(path.join(" ")))
            .render(&mut roff)?;
        pages.push((format!("{name}.1"), roff));
    }
    Ok(pages)
}

/// The man page section directory under an install prefix.
pub fn man_dir(prefix: &Path) -> PathBuf {
    prefix.join("share/man/man1")
}

/// Everything `meshctl install` writes beside the binary: completions for every shell in
/// [`SHELLS`] and every man page, as (path, contents).
pub fn install_files(root: &Command, prefix: &Path) -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let name = root.get_name().to_owned();
    let mut files: Vec<(PathBuf, Vec<u8>)> = SHELLS
        .iter()
        .map(|&shell| {
            (
                completion_path(prefix, shell, &name),
                completion(root, shell),
            )
        })
        .collect();
    let dir = man_dir(prefix);
    files.extend(
        man_pages(root)?
            .into_iter()
            .map(|(file, roff)| (dir.join(file), roff)),
    );
    Ok(files)
}

/// Writes every man page into `dir` (created if needed); returns the paths written.
pub fn write_man_pages(root: &Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (file, roff) in man_pages(root)? {
        let path = dir.join(file);
        fs::write(&path, roff)?;
        written.push(path);
    }
    Ok(written)
}
