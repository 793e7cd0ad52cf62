//! The module tree: its modules found by walking it, their `.modinfo`,
//! dependencies resolved.

use super::*;
use std::collections::{HashMap, HashSet};
use std::io::{self};
use std::path::{Path, PathBuf};

/// Kernel modules spell names with `_`; file names may use `-`.
pub fn normalize(name: &str) -> String {
    virtrun_protocol::normalize_module_name(name)
}

/// The module name of a file: its name without `.ko` and compression suffix.
pub(super) fn module_name(path: &Path) -> Option<String> {
    virtrun_protocol::module_name(path.file_name()?.to_str()?)
}

/// An installed or extracted `lib/modules/<release>` tree.
#[derive(Debug, Clone)]
pub struct ModuleTree {
    /// The tree's root.
    pub root: PathBuf,
    builtin: HashSet<String>,
    files: HashMap<String, PathBuf>,
    /// Dependencies from `modules.dep`, when the tree has one.
    dep_file: Option<HashMap<String, Vec<String>>>,
}

impl ModuleTree {
    /// Reads the tree at `root`: `modules.builtin`, and `modules.dep` or else
    /// the module files themselves.
    pub fn open(root: &Path) -> Result<Self, KernelError> {
        let builtin = match std::fs::read_to_string(root.join("modules.builtin")) {
            Ok(text) => text
                .lines()
                .filter_map(|l| module_name(Path::new(l.trim())))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(KernelError::Io(root.join("modules.builtin"), e)),
        };
        let mut files = HashMap::new();
        let mut dep_file = None;
        match std::fs::read_to_string(root.join("modules.dep")) {
            Ok(text) => {
                let mut deps = HashMap::new();
                for line in text.lines() {
                    let Some((module, needs)) = line.split_once(':') else {
                        continue;
                    };
                    let Some(name) = module_name(Path::new(module)) else {
                        continue;
                    };
                    files.insert(name.clone(), root.join(module));
                    let needs = needs
                        .split_whitespace()
                        .filter_map(|d| module_name(Path::new(d)))
                        .collect();
                    deps.insert(name, needs);
                }
                dep_file = Some(deps);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // modules.order lists every module of the build: one read
                // instead of a walk over thousands of files.
                match std::fs::read_to_string(root.join("modules.order")) {
                    Ok(text) => files.extend(text.lines().filter_map(|l| {
                        let listed = root.join(l.trim());
                        Some((module_name(&listed)?, listed))
                    })),
                    Err(_) => collect_modules(&root.join("kernel"), &mut files)?,
                }
            }
            Err(e) => return Err(KernelError::Io(root.join("modules.dep"), e)),
        }
        Ok(ModuleTree {
            root: root.to_path_buf(),
            builtin,
            files,
            dep_file,
        })
    }

    /// Every module of the tree: its name and file.
    pub fn modules(&self) -> impl Iterator<Item = (&str, PathBuf)> {
        self.files
            .iter()
            .filter_map(|(name, listed)| Some((name.as_str(), compressed_variant(listed)?)))
    }

    /// Whether the tree came with its own `modules.dep`.
    pub fn has_dep_file(&self) -> bool {
        self.dep_file.is_some()
    }

    /// Whether `name` is built into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }

    /// The file of module `name`, if the tree has it. A listed `x.ko` may be
    /// shipped as `x.ko.xz`; only the modules actually used are looked up.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        compressed_variant(self.files.get(&normalize(name))?)
    }

    fn depends(&self, name: &str) -> Result<Vec<String>, KernelError> {
        if let Some(deps) = &self.dep_file {
            return Ok(deps.get(name).cloned().unwrap_or_default());
        }
        let path = self.file(name).ok_or_else(|| self.unknown(name))?;
        modinfo_depends(&path)
    }

    fn unknown(&self, name: &str) -> KernelError {
        KernelError::UnknownModule {
            name: name.to_string(),
            tree: self.root.display().to_string(),
        }
    }

    /// The files of `names` and everything they depend on, dependencies
    /// first, each once; built-in modules are skipped.
    pub fn resolve(&self, names: &[&str]) -> Result<Vec<PathBuf>, KernelError> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for name in names {
            self.visit(&normalize(name), &mut Vec::new(), &mut done, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        done: &mut HashSet<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<(), KernelError> {
        if done.contains(name) || self.is_builtin(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(KernelError::Cycle(name.to_string()));
        }
        let path = self.file(name).ok_or_else(|| self.unknown(name))?;
        stack.push(name.to_string());
        for dep in self.depends(name)? {
            self.visit(&dep, stack, done, order)?;
        }
        stack.pop();
        done.insert(name.to_string());
        order.push(path);
        Ok(())
    }
}

/// The file `listed` names, or its compressed variant: `modules.order`
/// names `x.ko` where the package ships `x.ko.xz`.
pub(super) fn compressed_variant(listed: &Path) -> Option<PathBuf> {
    if listed.extension().is_some_and(|e| e != "ko") {
        return listed.is_file().then(|| listed.to_path_buf());
    }
    ["", ".xz", ".zst", ".gz"].iter().find_map(|ext| {
        let mut p = listed.as_os_str().to_os_string();
        p.push(ext);
        let p = PathBuf::from(p);
        p.is_file().then_some(p)
    })
}

/// Collects every module file below `dir`, by module name.
pub(super) fn collect_modules(
    dir: &Path,
    files: &mut HashMap<String, PathBuf>,
) -> Result<(), KernelError> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(io_err(dir))?,
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io_err(&path))?.is_dir() {
            collect_modules(&path, files)?;
        } else if let Some(name) = module_name(&path) {
            files.insert(name, path);
        }
    }
    Ok(())
}

/// The `depends=` list of a module's `.modinfo` section.
pub(super) fn modinfo_depends(path: &Path) -> Result<Vec<String>, KernelError> {
    Ok(modinfo(path)?
        .into_iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, deps)| {
            deps.split(',')
                .filter(|d| !d.is_empty())
                .map(normalize)
                .collect::<Vec<_>>()
        })
        .collect())
}

/// The `key=value` entries of a module's `.modinfo` section, in order.
pub fn modinfo(path: &Path) -> Result<Vec<(String, String)>, KernelError> {
    modinfo_of(&read_module(path)?, path)
}

/// [`modinfo`] of the module file `path` whose (decompressed) content is
/// `data`.
pub fn modinfo_of(data: &[u8], path: &Path) -> Result<Vec<(String, String)>, KernelError> {
    let bad = |msg: String| KernelError::BadModule(path.to_path_buf(), msg);
    if !data.starts_with(b"\x7fELF") {
        return Err(bad("not an ELF object".into()));
    }
    let elf = goblin::elf::Elf::parse(data).map_err(|e| bad(e.to_string()))?;
    let section = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".modinfo"))
        .ok_or_else(|| bad("no .modinfo section".into()))?;
    let start = section.sh_offset as usize;
    let info = data
        .get(start..start + section.sh_size as usize)
        .ok_or_else(|| bad(".modinfo outside the file".into()))?;
    Ok(info
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}
