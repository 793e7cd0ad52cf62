//! The `ld.so` search: an object's interpreter and needed libraries, each found
//! where glibc's loader would look, checked to be loadable by it.

use super::*;
use crate::inspect::elf::{self, ElfError, ElfInfo};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The reason [`State::check`] gives for a file that does not exist.
pub(super) const MISSING: &str = "not found";

/// An object waiting to have its dependencies resolved.
pub(super) struct Node {
    /// The path it was found at (for messages).
    pub(super) path: PathBuf,
    /// What `$ORIGIN` expands to for it.
    pub(super) origin: PathBuf,
    pub(super) info: Rc<ElfInfo>,
    /// The expanded DT_RPATHs of the objects that (transitively) loaded it.
    pub(super) loader_rpath: Rc<Vec<PathBuf>>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) out: Resolved,
    /// Guest names already in `out.libs`.
    pub(super) names: HashSet<String>,
    /// Entries of `out.dirs`.
    pub(super) dirs: HashSet<PathBuf>,
    /// Host paths whose dependencies are queued or done.
    pub(super) processed: HashSet<PathBuf>,
    pub(super) queue: VecDeque<Node>,
    /// Inspection results per candidate path, so each file is parsed once.
    pub(super) cache: HashMap<PathBuf, Result<Rc<ElfInfo>, String>>,
    pub(super) sysroot: Option<PathBuf>,
}

impl State {
    /// Inspects `path` (cached) and checks it can be loaded by `by`: an ELF
    /// file of the same machine and class. The error is a reason, or
    /// [`MISSING`].
    pub(super) fn check(&mut self, path: &Path, by: &ElfInfo) -> Result<Rc<ElfInfo>, String> {
        let result =
            self.cache
                .entry(path.to_path_buf())
                .or_insert_with(|| match elf::inspect(path) {
                    Ok(info) => Ok(Rc::new(info)),
                    Err(ElfError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
                        Err(MISSING.to_string())
                    }
                    Err(ElfError::Io { error, .. }) => Err(error.to_string()),
                    Err(ElfError::NotElf { .. }) => Err("not an ELF file".to_string()),
                    Err(ElfError::Malformed { detail, .. }) => {
                        Err(format!("truncated or malformed ELF: {detail}"))
                    }
                });
        let info = result.clone()?;
        if info.machine != by.machine || info.is_64 != by.is_64 {
            return Err(format!(
                "wrong architecture ({}, {}), need {}, {}",
                elf::machine_name(info.machine),
                class_name(info.is_64),
                elf::machine_name(by.machine),
                class_name(by.is_64)
            ));
        }
        Ok(info)
    }

    /// Records a library, its directory, and queues its own dependencies.
    pub(super) fn add(
        &mut self,
        guest_name: String,
        host_path: PathBuf,
        info: Rc<ElfInfo>,
        loader_rpath: Rc<Vec<PathBuf>>,
    ) {
        self.names.insert(guest_name.clone());
        let found_dir = normalize(&absolute(&parent_dir(&host_path)));
        let real_dir = fs::canonicalize(&found_dir).ok();
        for dir in std::iter::once(found_dir.clone()).chain(real_dir) {
            // Below a sysroot, the guest sees the path without it; a library
            // found outside the sysroot (e.g. through $ORIGIN) keeps its path.
            let dir = match &self.sysroot {
                Some(root) => match dir.strip_prefix(root) {
                    Ok(rest) => Path::new("/").join(rest),
                    Err(_) => dir,
                },
                None => dir,
            };
            if self.dirs.insert(dir.clone()) {
                self.out.dirs.push(dir);
            }
        }
        if self.processed.insert(host_path.clone()) {
            self.queue.push_back(Node {
                path: host_path.clone(),
                origin: found_dir,
                info,
                loader_rpath,
            });
        }
        self.out.libs.push(Lib {
            guest_name,
            host_path,
        });
    }
}

pub(super) fn class_name(is_64: bool) -> &'static str {
    if is_64 { "64-bit" } else { "32-bit" }
}

impl Resolver {
    /// Adds the interpreter and the needed libraries of one object.
    pub(super) fn process(&self, st: &mut State, node: Node) -> Result<(), LibError> {
        self.add_interpreter(st, &node)?;
        if node.info.needed.is_empty() {
            return Ok(());
        }
        let (rpath_chain, search) = self.search_dirs(&node);
        for name in &node.info.needed {
            self.add_needed(st, &node, name, &search, &rpath_chain)?;
        }
        Ok(())
    }

    /// The object's `PT_INTERP`, the guest's dynamic loader.
    pub(super) fn add_interpreter(&self, st: &mut State, node: &Node) -> Result<(), LibError> {
        let Some(interp) = &node.info.interpreter else {
            return Ok(());
        };
        let name = file_name(interp);
        if st.names.contains(&name) {
            return Ok(());
        }
        let interp = self.host(interp);
        let found = st
            .check(&interp, &node.info)
            .map_err(|reason| LibError::Unusable {
                object: node.path.clone(),
                what: "interpreter",
                path: interp.clone(),
                reason,
            })?;
        st.add(name, interp, found, Rc::new(Vec::new()));
        Ok(())
    }

    /// Where `ld.so` looks for the object's needed libraries, in order:
    /// `DT_RPATH` (only without `DT_RUNPATH`; the RPATHs of the objects
    /// that loaded this one after its own), `LD_LIBRARY_PATH`,
    /// `DT_RUNPATH`, the system directories. Also returns the RPATH chain
    /// the libraries it loads inherit.
    pub(super) fn search_dirs(&self, node: &Node) -> (Rc<Vec<PathBuf>>, Vec<PathBuf>) {
        let info = &node.info;
        let has_runpath = !info.runpath.is_empty();
        let rpath_chain = if has_runpath || info.rpath.is_empty() {
            node.loader_rpath.clone()
        } else {
            let mut chain = self.expand_all(&info.rpath, &node.origin, info);
            chain.extend(node.loader_rpath.iter().cloned());
            Rc::new(chain)
        };
        let runpath = self.expand_all(&info.runpath, &node.origin, info);
        let rpath_dirs = if has_runpath {
            &[][..]
        } else {
            &rpath_chain[..]
        };
        let mut search: Vec<PathBuf> = Vec::new();
        for dir in rpath_dirs
            .iter()
            .chain(&self.ld_library_path)
            .chain(&runpath)
            .chain(&self.system_dirs)
        {
            if !search.contains(dir) {
                search.push(dir.clone());
            }
        }
        (rpath_chain, search)
    }

    /// One `DT_NEEDED` entry of the object: a path as it is, a name found
    /// in `search`.
    pub(super) fn add_needed(
        &self,
        st: &mut State,
        node: &Node,
        name: &str,
        search: &[PathBuf],
        rpath_chain: &Rc<Vec<PathBuf>>,
    ) -> Result<(), LibError> {
        if name.contains('/') {
            let path = self.host(Path::new(name));
            let guest_name = file_name(&path);
            if st.names.contains(&guest_name) {
                return Ok(());
            }
            let found = st
                .check(&path, &node.info)
                .map_err(|reason| LibError::Unusable {
                    object: node.path.clone(),
                    what: "library",
                    path: path.clone(),
                    reason,
                })?;
            st.add(guest_name, path, found, rpath_chain.clone());
            return Ok(());
        }
        if st.names.contains(name) {
            return Ok(());
        }
        let mut rejected = Vec::new();
        for dir in search {
            let candidate = dir.join(name);
            match st.check(&candidate, &node.info) {
                Ok(found) => {
                    st.add(name.to_string(), candidate, found, rpath_chain.clone());
                    return Ok(());
                }
                Err(reason) if reason == MISSING => {}
                Err(reason) => rejected.push(format!("{}: {reason}", candidate.display())),
            }
        }
        Err(LibError::NotFound {
            object: node.path.clone(),
            name: name.to_string(),
            searched: search.to_vec(),
            rejected,
        })
    }
}
