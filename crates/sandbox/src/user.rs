//! The step's user: Dockerfile `USER` text resolved against the image's `/etc/passwd` and
//! `/etc/group`, read inside the sandbox after `pivot_root` (so from the image, never the host).

/// A resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups: the primary group and every group of `/etc/group` that lists the
    /// user; only the named group with `user:group`.
    pub(crate) groups: Vec<u32>,
    /// Home directory, for `HOME` when the environment has none.
    pub(crate) home: String,
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`) with the given file texts.
pub(crate) fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Identity, String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entries: Vec<Vec<&str>> = passwd.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 4).collect();
    let found = match user.parse::<u32>() {
        Ok(uid) => entries.iter().find(|f| f[2].parse::<u32>().ok() == Some(uid)),
        Err(_) => entries.iter().find(|f| f[0] == user),
    };
    let (name, uid, primary, home) = match (found, user.parse::<u32>()) {
        (Some(f), _) => (
            f[0].to_string(),
            f[2].parse::<u32>().map_err(|_| format!("bad uid in passwd entry for {}", f[0]))?,
            f[3].parse::<u32>().map_err(|_| format!("bad gid in passwd entry for {}", f[0]))?,
            f.get(5).map_or("/", |h| *h).to_string(),
        ),
        // A numeric user with no entry runs with gid 0, as in Docker.
        (None, Ok(uid)) => (String::new(), uid, 0, "/".to_string()),
        (None, Err(_)) => return Err(format!("unable to find user {user}: no matching entries in passwd file")),
    };
    let groups: Vec<Vec<&str>> = group.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 3).collect();
    let gid = match grp {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
    };
    // As BuildKit: the step's group is always among them; the user's other groups come only
    // when no group was named.
    let mut supplementary = vec![gid];
    if grp.is_none() && !name.is_empty() {
        for f in &groups {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !supplementary.contains(&g) {
                        supplementary.push(g);
                    }
                }
            }
        }
    }
    Ok(Identity { uid, gid, groups: supplementary, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,root\napp:x:1000:\nnogroup:x:65534:\n";

    #[test]
    fn docker_user_forms() {
        // As `id` shows them in Docker 28.5's RUN: the primary group plus the user's member
        // groups; exactly the named group with `user:group`; gid 0 for an unknown uid.
        assert_eq!(resolve("", PASSWD, GROUP).unwrap(), Identity { uid: 0, gid: 0, groups: vec![0, 10], home: "/root".into() });
        let app = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((app.uid, app.gid, app.groups.clone(), app.home.as_str()), (1000, 1000, vec![1000, 10], "/home/app"));
        assert_eq!(resolve("1000:10", PASSWD, GROUP).unwrap().groups, vec![10]);
        let named = resolve("app:nogroup", PASSWD, GROUP).unwrap();
        assert_eq!((named.gid, named.groups), (65534, vec![65534]));
        assert_eq!(resolve("4242", PASSWD, GROUP).unwrap(), Identity { uid: 4242, gid: 0, groups: vec![0], home: "/".into() });
        assert!(resolve("ghost", PASSWD, GROUP).unwrap_err().contains("unable to find user ghost"));
        assert!(resolve("app:ghosts", PASSWD, GROUP).unwrap_err().contains("unable to find group ghosts"));
    }
}
