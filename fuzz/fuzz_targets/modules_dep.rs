//! The module tree on an arbitrary `modules.dep` (and `modules.builtin`).
//!
//! Input layout: the text of `modules.dep`, optionally followed by a NUL and
//! the text of `modules.builtin`. Every module file the dependency file names
//! (inside the tree) is created empty, since the tree checks that files exist;
//! then every module named is resolved. Resolution must end (cycles are
//! errors), list each module once and put dependencies first.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use virtrun::inspect::kernel::ModuleTree;

/// Most files created per input, so that one input cannot fill the disk.
const MAX_FILES: usize = 64;

fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        std::env::temp_dir().join(format!("virtrun-fuzz-modules-{}", std::process::id()))
    })
}

/// The module name of a path, as the tree spells it.
fn module_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

/// Whether `rel` stays inside the tree when joined to its root.
fn inside(rel: &Path) -> bool {
    rel.components().count() <= 4 && rel.components().all(|c| matches!(c, Component::Normal(_)))
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let dep = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let builtin = parts
        .next()
        .map(|b| String::from_utf8_lossy(b).into_owned());

    let root = root();
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("modules.dep"), &dep).unwrap();
    if let Some(builtin) = &builtin {
        std::fs::write(root.join("modules.builtin"), builtin).unwrap();
    }

    // The graph as modules.dep describes it (a later line for the same module
    // wins), and the files to create.
    let mut graph: HashMap<String, Vec<String>> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut files: Vec<&str> = Vec::new();
    for line in dep.lines() {
        let Some((module, needs)) = line.split_once(':') else {
            continue;
        };
        let Some(name) = module_name(Path::new(module)) else {
            continue;
        };
        let deps: Vec<&str> = needs
            .split_whitespace()
            .filter(|d| module_name(Path::new(d)).is_some())
            .collect();
        graph.insert(
            name.clone(),
            deps.iter()
                .filter_map(|d| module_name(Path::new(d)))
                .collect(),
        );
        names.push(name);
        names.extend(deps.iter().filter_map(|d| module_name(Path::new(d))));
        files.push(module);
        files.extend(deps);
    }
    for file in files.iter().take(MAX_FILES) {
        let rel = Path::new(file);
        if inside(rel) {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(&path, b"");
        }
    }
    let builtin: HashSet<String> = builtin
        .iter()
        .flat_map(|b| b.lines())
        .filter_map(|l| module_name(Path::new(l.trim())))
        .collect();

    let Ok(tree) = ModuleTree::open(root) else {
        return;
    };
    names.truncate(32);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let Ok(paths) = tree.resolve(&names) else {
        return;
    };
    let order: Vec<String> = paths.iter().map(|p| module_name(p).unwrap()).collect();
    let mut seen = HashSet::new();
    for (pos, name) in order.iter().enumerate() {
        assert!(seen.insert(name), "{name} listed twice: {order:?}");
        assert!(!builtin.contains(name), "built-in {name} listed");
        for dep in graph.get(name).into_iter().flatten() {
            if !builtin.contains(dep) {
                assert!(
                    order[..pos].contains(dep),
                    "{name} before its dependency {dep}: {order:?}"
                );
            }
        }
    }
});
