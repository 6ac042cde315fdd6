//! The key-encryption key of a SQLite deployment started without `CIBA_KEY_ENCRYPTION_KEY`:
//! made from the CSPRNG on first start and kept in a file beside the database, readable only
//! by its owner. No key is compiled into the program. PostgreSQL deployments must set the
//! variable (configuration refuses to start otherwise).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ciba_domain::ids::{random_bytes, random_id};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the key of the SQLite database at `db_path` is kept: `<db_path>.kek`.
pub fn path_for(db_path: &str) -> PathBuf {
    PathBuf::from(format!("{db_path}.kek"))
}

/// Read the key from `path`, or make one and write it there if the file does not exist.
/// Returns the key and whether this call created the file. Safe against a concurrent first
/// start of another process (API and worker): the file appears whole or not at all.
pub fn load_or_create(path: &Path) -> Result<([u8; 32], bool), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            owner_only(path)?;
            return parse(path, &text).map(|k| (k, false));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read the key file {}: {e}", path.display())),
    }
    let key: [u8; 32] = random_bytes::<32>();
    let tmp = path.with_extension(format!("kek.tmp-{}", random_id()));
    let written = write_private(&tmp, &format!("{}\n", STANDARD.encode(key)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "cannot write the key file {} (is its folder missing or read-only?): {e}",
            path.display()
        ));
    }
    // A hard link fails if the name exists: exactly one of racing processes publishes its key.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((key, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
            parse(path, &text).map(|k| (k, false))
        }
        Err(e) => Err(format!(
            "cannot create the key file {}: {e}",
            path.display()
        )),
    }
}

/// Refuse a key file others may read (as ssh refuses a private key with loose permissions):
/// the key decrypts every signing key.
fn owner_only(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "the key file {} may be read by others (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn parse(path: &Path, text: &str) -> Result<[u8; 32], String> {
    STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            format!(
                "the key file {} does not hold 32 bytes in standard base64",
                path.display()
            )
        })
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ciba-kek-test-{}", random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn makes_a_private_key_once_and_reads_it_back() {
        let dir = temp_dir();
        let path = path_for(dir.join("ciba.db").to_str().unwrap());
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        // Two fresh databases never share a key.
        let other = path_for(dir.join("other.db").to_str().unwrap());
        assert_ne!(load_or_create(&other).unwrap().0, first);
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir();
        let path = path_for(dir.join("ciba.db").to_str().unwrap());
        let (key, _) = load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_or_create(&path).unwrap().0, key);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_a_damaged_file_and_a_missing_folder() {
        let dir = temp_dir();
        let path = dir.join("bad.kek");
        write_private(&path, "c2hvcnQ=\n").unwrap();
        assert!(load_or_create(&path).unwrap_err().contains("32 bytes"));
        let missing = dir.join("no/such/folder/ciba.db.kek");
        assert!(load_or_create(&missing)
            .unwrap_err()
            .contains("cannot write"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
