//! `--chown` owners: `user[:group]` as names or numbers, names looked up in the image's
//! `/etc/passwd` and `/etc/group` (read inside the image's root, never the host's).

use std::io::Read;

use crate::rootfs::Root;

/// Resolves `spec` to (uid, gid). A user given without a group gets the user's primary group
/// when the user is a name found in passwd, and the same number as gid when it is numeric,
/// as BuildKit does.
pub(crate) fn resolve_owner(root: &Root, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read(root, "/etc/passwd");
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => lookup(&passwd, user, 2)
            .and_then(|f| Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?)))
            .ok_or_else(|| format!("unable to find user {user}: no matching entries in passwd file"))?,
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(&read(root, "/etc/group"), g, 2)
                .and_then(|f| f.first()?.parse().ok())
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
    };
    Ok((uid, gid))
}

fn read(root: &Root, path: &str) -> String {
    let mut text = String::new();
    if let Ok(mut f) = root.open_file(path) {
        // A missing or unreadable file simply has no entries, as in BuildKit.
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// The fields after the first `skip` ones (name, password) of the line whose name is `name`.
fn lookup<'a>(text: &'a str, name: &str, skip: usize) -> Option<Vec<&'a str>> {
    text.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.first() == Some(&name)).map(|f| f[skip.min(f.len())..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n").unwrap();
        std::fs::write(tmp.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        let root = Root::open(tmp.path()).unwrap();
        assert_eq!(resolve_owner(&root, "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_owner(&root, "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_owner(&root, "7").unwrap(), (7, 7));
        assert_eq!(resolve_owner(&root, "7:root").unwrap(), (7, 0));
        assert!(resolve_owner(&root, "ghost").unwrap_err().contains("unable to find user ghost"));
        assert!(resolve_owner(&root, "app:ghosts").unwrap_err().contains("group ghosts"));
    }
}
