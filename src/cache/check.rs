//! Consistency: `Cache.check`, the database against the value files and
//! the counters, in core.py's order (integrity, value files, unknown files,
//! empty directories, `Settings.count` and `Settings.size`), one small
//! function per step. With `fix` each step repairs what it found, as core.py
//! does. Ours: duplicate keys (a crafted or damaged cache) and rows whose
//! filename leaves the directory are reported and, with `fix`, deleted; the
//! walk and every removal go through `Disk` (beneath the directory, never
//! following a symbolic link).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use super::core::{Cache, query_column};
use super::disk::FetchError;
use super::error::Result;
use super::open::CREATE_KEY_INDEX;
use super::settings::DBNAME;
use super::types::Scalar;

/// Warnings from [`Cache::check`], one per problem, as diskcache warns.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckWarning {
    pub kind: CheckKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckKind {
    Integrity,
    WrongFileSize,
    FileNotFound,
    UnknownFile,
    EmptyDirectory,
    CountMismatch,
    SizeMismatch,
    /// Ours: a row whose filename leaves the cache directory.
    UnsafeFilename,
}

/// The warnings of one check, each logged as it is found.
struct Report<'a> {
    directory: &'a Path,
    warnings: Vec<CheckWarning>,
}

impl Report<'_> {
    fn warn(&mut self, kind: CheckKind, message: String) {
        log::warn!("check {}: {message}", self.directory.display());
        self.warnings.push(CheckWarning { kind, message });
    }
}

impl Cache {
    /// Checks the database against the value files and the counters
    /// (`Cache.check`); with `fix`, repairs what it finds as diskcache does.
    /// A row whose filename leaves the directory is reported (and with
    /// `fix` deleted) without touching the path it names.
    pub fn check(&self, fix: bool) -> Result<Vec<CheckWarning>> {
        let mut report = Report { directory: &self.directory, warnings: Vec::new() };
        self.check_integrity(fix, &mut report)?;
        self.check_duplicate_keys(fix, &mut report)?;
        let checks = || {
            let known = self.check_value_files(fix, &mut report)?;
            self.check_unknown_files(&known, fix, &mut report);
            self.check_empty_directories(fix, &mut report);
            self.check_counters(fix, &mut report)
        };
        if self.read_only && !fix {
            // A read-only handle (read-only media) checks in a read
            // transaction: one consistent view, and nothing written.
            self.in_read_transaction(checks)?;
        } else {
            self.in_transaction(checks)?;
        }
        Ok(report.warnings)
    }

    /// Runs `f` in a deferred (read) transaction.
    fn in_read_transaction<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN")?;
        let result = f();
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        match (result, self.conn.execute_batch(end)) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), _) => Err(e),
        }
    }

    /// `PRAGMA integrity_check`; `fix` then runs VACUUM.
    fn check_integrity(&self, fix: bool, report: &mut Report<'_>) -> Result<()> {
        let integrity: Vec<String> = query_column(&self.conn, "PRAGMA integrity_check")?;
        if integrity.len() != 1 || integrity[0] != "ok" {
            for message in integrity {
                report.warn(CheckKind::Integrity, message);
            }
        }
        if fix {
            self.conn.execute_batch("VACUUM")?;
        }
        Ok(())
    }

    /// Duplicate keys (only in a crafted or damaged cache: the unique
    /// index forbids them): fix keeps the newest row of each, then creates
    /// the index opening had to do without.
    fn check_duplicate_keys(&self, fix: bool, report: &mut Report<'_>) -> Result<()> {
        let duplicates: Vec<i64> = query_column(
            &self.conn,
            "SELECT c.rowid FROM Cache c JOIN (SELECT key, raw, MAX(rowid) AS last FROM Cache GROUP BY key, raw \
             HAVING COUNT(*) > 1) d ON c.key = d.key AND c.raw = d.raw AND c.rowid < d.last",
        )?;
        if duplicates.is_empty() {
            return Ok(());
        }
        report.warn(CheckKind::Integrity, format!("{} rows duplicate a newer row's key", duplicates.len()));
        if !fix {
            return Ok(());
        }
        self.in_transaction(|| {
            for rowid in &duplicates {
                self.delete_duplicate(*rowid)?;
            }
            self.conn.execute(CREATE_KEY_INDEX, [])?;
            Ok(())
        })
    }

    /// Deletes one duplicate row, and its value file unless the row kept
    /// shares it (a copied row).
    fn delete_duplicate(&self, rowid: i64) -> Result<()> {
        let filename: Option<String> = self
            .conn
            .query_row("SELECT filename FROM Cache WHERE rowid = ?", [rowid], |r| r.get(0))
            .optional()?
            .flatten();
        self.conn.execute("DELETE FROM Cache WHERE rowid = ?", [rowid])?;
        let shared: i64 =
            self.conn.query_row("SELECT COUNT(*) FROM Cache WHERE filename = ?", [&filename], |r| r.get(0))?;
        if shared == 0 {
            self.cleanup_later(filename);
        }
        Ok(())
    }

    /// Every row's value file against its `size`; returns the names the
    /// rows account for (relative, as the walk reports them), so that the
    /// walk can tell the unknown ones.
    fn check_value_files(&self, fix: bool, report: &mut Report<'_>) -> Result<HashSet<PathBuf>> {
        let rows: Vec<(i64, i64, String)> = {
            let mut stmt = self.conn.prepare("SELECT rowid, size, filename FROM Cache WHERE filename IS NOT NULL")?;
            let mapped =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0), r.get(2)?)))?;
            mapped.collect::<rusqlite::Result<_>>()?
        };
        let mut known = HashSet::new();
        for (rowid, size, filename) in rows {
            if self.check_value_file(rowid, size, &filename, fix, report)? {
                known.insert(PathBuf::from(filename));
            }
        }
        Ok(known)
    }

    /// One row's value file: a wrong size (fix: the row takes the file's),
    /// a missing file or an unsafe name (fix: the row goes). Returns
    /// whether the name is the row's to keep the walk from calling it
    /// unknown (a missing file's name too, as core.py counts it).
    fn check_value_file(
        &self,
        rowid: i64,
        size: i64,
        filename: &str,
        fix: bool,
        report: &mut Report<'_>,
    ) -> Result<bool> {
        let full_path = self.disk.full_path(filename);
        match self.disk.file_size(filename) {
            Ok(Some(real)) => {
                if size != real as i64 {
                    report.warn(
                        CheckKind::WrongFileSize,
                        format!("wrong file size: {}, {real} != {size}", full_path.display()),
                    );
                    if fix {
                        self.conn.execute("UPDATE Cache SET size = ? WHERE rowid = ?", params![real as i64, rowid])?;
                    }
                }
                Ok(true)
            }
            Ok(None) | Err(FetchError::Missing) => {
                report.warn(CheckKind::FileNotFound, format!("file not found: {}", full_path.display()));
                if fix {
                    self.conn.execute("DELETE FROM Cache WHERE rowid = ?", [rowid])?;
                }
                Ok(true)
            }
            Err(FetchError::Unsafe) => {
                report.warn(
                    CheckKind::UnsafeFilename,
                    format!("unsafe filename: row {rowid}, {filename:?} points outside the cache directory"),
                );
                if fix {
                    self.conn.execute("DELETE FROM Cache WHERE rowid = ?", [rowid])?;
                }
                Ok(false)
            }
            Err(FetchError::Io(e)) => Err(self.io_err(filename, e)),
        }
    }

    /// Files no row names (the database's own files aside, by core.py's
    /// `DBNAME in full_path`); fix removes them. A symbolic link is such a
    /// file itself: fix removes the link, never what it points to.
    fn check_unknown_files(&self, known: &HashSet<PathBuf>, fix: bool, report: &mut Report<'_>) {
        for rel in self.disk.walk().files {
            let path = self.disk.full_path(&rel);
            if known.contains(&rel) || path.to_string_lossy().contains(DBNAME) {
                continue;
            }
            report.warn(CheckKind::UnknownFile, format!("unknown file: {}", path.display()));
            if fix {
                let _ = self.disk.remove_entry(&rel);
            }
        }
    }

    /// Empty directories, from a second walk as in core.py (removing
    /// unknown files may have emptied some). Unlike core.py, fix also
    /// removes the parents this empties (`XX/` once its last `YY/` goes),
    /// so that one fix leaves a cache that checks clean.
    fn check_empty_directories(&self, fix: bool, report: &mut Report<'_>) {
        for (rel, empty) in self.disk.walk().dirs {
            if empty {
                report.warn(
                    CheckKind::EmptyDirectory,
                    format!("empty directory: {}", self.disk.full_path(&rel).display()),
                );
                if fix {
                    self.disk.remove_dirs(&rel);
                }
            }
        }
    }

    /// `Settings.count` and `Settings.size` against the table; fix sets
    /// them to what the table says.
    fn check_counters(&self, fix: bool, report: &mut Report<'_>) -> Result<()> {
        let real_count: i64 = self.conn.query_row("SELECT COUNT(key) FROM Cache", [], |r| r.get(0))?;
        self.check_counter("count", real_count, CheckKind::CountMismatch, "COUNT(Cache.key)", fix, report)?;
        // SUM fails with "integer overflow" on absurd (crafted) sizes,
        // where core.py's check would fail too: TOTAL, saturated, then.
        let real_size: i64 = match self.conn.query_row("SELECT COALESCE(SUM(size), 0) FROM Cache", [], |r| r.get(0)) {
            Ok(n) => n,
            Err(_) => {
                let total: f64 = self.conn.query_row("SELECT TOTAL(size) FROM Cache", [], |r| r.get(0))?;
                total as i64
            }
        };
        self.check_counter("size", real_size, CheckKind::SizeMismatch, "SUM(Cache.size)", fix, report)
    }

    fn check_counter(
        &self,
        name: &str,
        real: i64,
        kind: CheckKind,
        what: &str,
        fix: bool,
        report: &mut Report<'_>,
    ) -> Result<()> {
        let stored = match self.reset(name, None)? {
            Scalar::Int(n) => n,
            _ => i64::MIN,
        };
        if stored != real {
            report.warn(kind, format!("Settings.{name} != {what}; {stored} != {real}"));
            if fix {
                self.conn.execute("UPDATE Settings SET value = ? WHERE key = ?", params![real, name])?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::cache::core::CacheOptions;
    use crate::cache::settings::MODE_BINARY;
    use crate::cache::testing::{TestCache, key};
    use crate::cache::types::{Key, Value};

    fn kinds(warnings: &[CheckWarning]) -> Vec<CheckKind> {
        warnings.iter().map(|w| w.kind).collect()
    }

    /// A cache with one file-backed entry "a"; returns it and its file.
    fn with_a_file() -> (TestCache, PathBuf) {
        let t = TestCache::new();
        t.set(&key("a"), &Value::Bytes(vec![1; 40_000]), None, None).unwrap();
        t.set(&key("inline"), &Value::Int(1), None, None).unwrap();
        let file = t.path().join(&t.value_files()[0]);
        (t, file)
    }

    #[test]
    fn a_missing_value_file_is_found_and_fix_drops_its_row() {
        let (t, file) = with_a_file();
        assert_eq!(t.check(false).unwrap(), vec![]);
        std::fs::remove_file(&file).unwrap();
        let warnings = t.check(false).unwrap();
        assert_eq!(kinds(&warnings), [CheckKind::FileNotFound, CheckKind::EmptyDirectory]);
        assert_eq!(warnings[0].message, format!("file not found: {}", file.display()));
        assert_eq!(kinds(&t.check(true).unwrap()), [CheckKind::FileNotFound, CheckKind::EmptyDirectory]);
        assert_eq!(t.check(false).unwrap(), vec![], "one fix checks clean");
        assert_eq!(t.len().unwrap(), 1);
        assert!(!file.parent().unwrap().parent().unwrap().exists(), "XX/ went with YY/");
    }

    #[test]
    fn a_wrong_size_is_found_and_fix_takes_the_files() {
        let (t, file) = with_a_file();
        t.conn.execute("UPDATE Cache SET size = 5 WHERE key = 'a'", []).unwrap();
        let warnings = t.check(false).unwrap();
        assert_eq!(kinds(&warnings), [CheckKind::WrongFileSize]);
        assert_eq!(warnings[0].message, format!("wrong file size: {}, 40000 != 5", file.display()));
        t.check(true).unwrap();
        assert_eq!(t.check(false).unwrap(), vec![]);
        assert_eq!(t.get(&key("a")).unwrap(), Some(Value::Bytes(vec![1; 40_000])));
    }

    #[test]
    fn an_unknown_file_is_found_and_fix_removes_it_and_its_directories() {
        let (t, file) = with_a_file();
        // Two top directories other than the one the entry's file is in
        // (its name is random).
        let own = file.strip_prefix(t.path()).unwrap().components().next().unwrap().as_os_str().to_owned();
        let mut free = ["0a", "ee", "5c"].into_iter().filter(|d| std::ffi::OsStr::new(d) != own);
        let (stray_top, empty_top) = (free.next().unwrap(), free.next().unwrap());
        let stray = t.path().join(stray_top).join("0b/stray.val");
        std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
        std::fs::write(&stray, b"stray").unwrap();
        std::fs::create_dir_all(t.path().join(empty_top).join("ff")).unwrap();
        let warnings = t.check(false).unwrap();
        assert_eq!(kinds(&warnings), [CheckKind::UnknownFile, CheckKind::EmptyDirectory]);
        assert_eq!(warnings[0].message, format!("unknown file: {}", stray.display()));
        assert_eq!(warnings[1].message, format!("empty directory: {}", t.path().join(empty_top).join("ff").display()));
        t.check(true).unwrap();
        assert!(!t.path().join(stray_top).exists() && !t.path().join(empty_top).exists());
        assert!(file.exists(), "the entry's own file stays");
        assert_eq!(t.check(false).unwrap(), vec![]);
    }

    #[test]
    fn counters_that_disagree_with_the_table_are_found_and_fixed() {
        let (t, _) = with_a_file();
        t.conn.execute("UPDATE Settings SET value = 99 WHERE key = 'count'", []).unwrap();
        t.conn.execute("UPDATE Settings SET value = 7 WHERE key = 'size'", []).unwrap();
        let warnings = t.check(false).unwrap();
        assert_eq!(kinds(&warnings), [CheckKind::CountMismatch, CheckKind::SizeMismatch]);
        assert_eq!(warnings[0].message, "Settings.count != COUNT(Cache.key); 99 != 2");
        assert_eq!(warnings[1].message, "Settings.size != SUM(Cache.size); 7 != 40000");
        t.check(true).unwrap();
        assert_eq!(t.check(false).unwrap(), vec![]);
        assert_eq!(t.len().unwrap(), 2);
    }

    #[test]
    fn duplicate_keys_keep_the_newest_row() {
        let (t, _) = with_a_file();
        t.conn.execute_batch("DROP INDEX Cache_key_raw").unwrap();
        t.conn
            .execute_batch(
                "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, \
                 filename, value) SELECT key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, \
                 filename, 2 FROM Cache WHERE key = 'inline'",
            )
            .unwrap();
        assert_eq!(kinds(&t.check(false).unwrap()), [CheckKind::Integrity]);
        t.check(true).unwrap();
        assert_eq!(t.check(false).unwrap(), vec![]);
        assert_eq!(t.get(&key("inline")).unwrap(), Some(Value::Int(2)));
        let reopened = Cache::open_with(t.path(), CacheOptions::default()).unwrap();
        assert_eq!(reopened.len().unwrap(), 2);
    }

    #[test]
    fn check_fix_never_follows_a_symlink_out_of_the_cache_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(outside.join("ab")).unwrap();
        std::fs::create_dir_all(outside.join("empty")).unwrap();
        std::fs::write(outside.join("ab/victim.val"), b"victim").unwrap();
        std::fs::write(outside.join("stray.txt"), b"stray").unwrap();

        let cache = Cache::open(&dir).unwrap();
        cache.set(&Key::Str("fine".into()), &Value::Bytes(vec![7; 50_000]), None, None).unwrap();
        symlink(&outside, dir.join("XX")).unwrap();
        // A row whose value file is reachable only through the link.
        cache.set(&Key::Str("through".into()), &Value::Int(1), None, None).unwrap();
        cache
            .conn
            .execute(
                "UPDATE Cache SET mode = ?, filename = 'XX/ab/victim.val', size = 6, value = NULL WHERE key = 'through'",
                [MODE_BINARY],
            )
            .unwrap();

        let warnings = cache.check(true).unwrap();
        assert_eq!(std::fs::read(outside.join("ab/victim.val")).unwrap(), b"victim");
        assert_eq!(std::fs::read(outside.join("stray.txt")).unwrap(), b"stray");
        assert!(outside.join("empty").is_dir(), "an outside empty directory is not ours to remove");
        // Nothing beyond the link is reported (but the row naming it); the
        // link itself may be.
        let link = dir.join("XX");
        for w in warnings.iter().filter(|w| w.kind != CheckKind::UnsafeFilename) {
            assert!(!w.message.contains("XX/") && !w.message.contains("outside"), "{w:?}");
            if w.kind == CheckKind::UnknownFile {
                assert_eq!(w.message, format!("unknown file: {}", link.display()));
            }
        }
        assert!(warnings.iter().any(|w| w.kind == CheckKind::UnsafeFilename), "{warnings:?}");
        assert!(std::fs::symlink_metadata(&link).is_err(), "fix removes the link itself");
        assert!(outside.is_dir());
        assert_eq!(cache.get(&Key::Str("fine".into())).unwrap(), Some(Value::Bytes(vec![7; 50_000])));
        assert_eq!(cache.check(false).unwrap(), vec![], "one fix checks clean");
    }
}
