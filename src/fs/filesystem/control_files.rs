//! `stats` and `settings/` (docs/SEMANTICS.md, "Stats and settings"): their
//! attributes and content, and applying what is written to a setting.

use super::*;

impl DiskCacheFs {
    pub(super) fn control_attr(&self, ino: u64, len: usize, writable: bool) -> Attr {
        let mut attr = self.file_attr(ino, len as u64, 0.0, 0.0);
        let now = self.tree_time();
        (attr.atime, attr.mtime, attr.ctime) = (now, now, now);
        attr.perm = if writable && !self.config.read_only { 0o644 } else { 0o444 };
        attr
    }

    pub(super) fn stats_bytes(&self, st: &State) -> Result<Vec<u8>, FsError> {
        let mut stats = st.cache.stats_json(&self.directory).map_err(|e| FsError::cache("stats", e))?;
        if let Some(requests) = self.request_stats.get() {
            stats["requests"] = requests.to_json();
            if let Some(transport) = requests.transport_json() {
                stats["transport"] = transport;
            }
        }
        // Key inodes the kernel holds (each costs the daemon about 1 KiB;
        // past max, the oldest unused are asked to be forgotten).
        stats["inodes"] = serde_json::json!({
            "keys": st.inodes.len(),
            "max": self.config.max_inodes,
            "forget_pending": st.inodes.forget_pending(),
        });
        // Misses the kernel was let keep, and how often a change through
        // another path made every entry stale (negatives.rs).
        let (kept, epochs) = self.negative_stats();
        stats["negative_entries"] = serde_json::json!({"kept": kept, "epochs_raised": epochs});
        if let Some(tier) = self.remote() {
            stats["remote"] = tier.status();
        }
        if let Some(statements) = crate::cache::statements_run() {
            // Counted with DISKCACHEFS_COUNT_SQL set (scripts/bench counts).
            let locks = self.tables_locks.load(std::sync::atomic::Ordering::Relaxed);
            stats["internals"] = serde_json::json!({
                "sql_statements": statements,
                "tables_locks": locks,
                "handle_checkouts": self.store.checkouts(),
            });
        }
        Ok(stats_text(&stats))
    }

    /// A setting's file content, `None` when there is no such setting.
    pub(super) fn setting_bytes(st: &State, name: &str) -> Result<Option<Vec<u8>>, FsError> {
        if is_metadata(name) {
            return Ok(None);
        }
        let settings = st.cache.read_settings().map_err(|e| FsError::cache(format!("settings/{name}"), e))?;
        Ok(settings.values.get(name).map(setting_text))
    }

    pub(super) fn setting_ino(st: &mut Tables, name: &str) -> u64 {
        FIRST_SETTING + st.settings.intern(name.to_string(), || name.to_string()) as u64
    }

    pub(super) fn setting_name(st: &Tables, ino: u64) -> Option<String> {
        if !(FIRST_SETTING..FIRST_KEY_INODE).contains(&ino) {
            return None;
        }
        st.settings.get((ino - FIRST_SETTING) as usize).cloned()
    }

    /// Attributes of `stats` or a setting's file.
    pub(super) fn control_getattr(&self, st: &State, ino: u64) -> Result<Attr, FsError> {
        if ino == STATS {
            return Ok(self.control_attr(ino, self.stats_bytes(st)?.len(), false));
        }
        let name = Self::setting_name(st, ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let text = Self::setting_bytes(st, &name)?.ok_or_else(|| FsError::NotFound(format!("settings/{name}")))?;
        Ok(self.control_attr(ino, text.len(), true))
    }

    /// Applies what was written to a setting's file: `reset(name, value)`.
    /// Nothing written (only white space) changes nothing: a shell's
    /// `echo V > settings/NAME` closes the file once before writing to it.
    /// Runs on a writer handle of its own with the tables unlocked (a
    /// setting may be a pragma, which SQLite refuses inside a transaction).
    pub(super) fn apply_setting(&self, name: &str, text: &[u8]) -> Result<(), FsError> {
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let what = format!("settings/{name}");
        let value = parse_setting(text).map_err(|reason| FsError::InvalidValue { what: what.clone(), reason })?;
        let c = self.writer()?;
        match (name, &value) {
            // The tag index is the setting and the index itself: writing
            // 1 or 0 is create_tag_index() or drop_tag_index().
            ("tag_index", Scalar::Int(1)) => c.create_tag_index(),
            ("tag_index", Scalar::Int(0)) => c.drop_tag_index(),
            ("tag_index", _) => {
                return Err(FsError::InvalidValue { what, reason: "tag_index is 0 or 1".into() });
            }
            _ => c.reset(name, Some(value.clone())).map(drop),
        }
        .map_err(|e| FsError::cache(what, e))?;
        self.store.settings_changed();
        Ok(())
    }

    /// A complete line written to a setting's file is checked at once, so
    /// that the write itself fails (errors at close are often ignored).
    pub(super) fn check_setting_line(st: &State, name: &str, text: &[u8]) -> Result<(), FsError> {
        if !text.ends_with(b"\n") || text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let what = format!("settings/{name}");
        let value = parse_setting(text).map_err(|reason| FsError::InvalidValue { what: what.clone(), reason })?;
        st.cache.check_setting(name, &value).map_err(|e| FsError::cache(what, e))
    }
}
