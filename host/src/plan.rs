//! Which surfaces a deploy runs, and in what order (rule 3): topological order
//! of `depends_on`, ties broken by the order of the manifest.

use crate::manifest::Surface;
use indexmap::IndexMap;

/// Every surface, dependencies first. Refuses cycles, naming one.
pub fn order_all(surfaces: &IndexMap<String, Surface>) -> Result<Vec<String>, String> {
    let mut done: Vec<String> = Vec::with_capacity(surfaces.len());
    while done.len() < surfaces.len() {
        // The first surface in manifest order whose dependencies are all done.
        let next = surfaces.iter().find(|(name, s)| {
            !done.contains(name) && s.depends_on.iter().all(|d| done.contains(d))
        });
        match next {
            Some((name, _)) => done.push(name.clone()),
            None => return Err(describe_cycle(surfaces, &done)),
        }
    }
    Ok(done)
}

/// The named surfaces, in the same relative order as [`order_all`]. Their
/// dependencies are not added: `deploy web` deploys web only.
pub fn order_selected(
    surfaces: &IndexMap<String, Surface>,
    selected: &[String],
) -> Result<Vec<String>, String> {
    for name in selected {
        if !surfaces.contains_key(name) {
            let known: Vec<&str> = surfaces.keys().map(String::as_str).collect();
            return Err(format!(
                "no surface named `{name}`; the manifest defines: {}",
                known.join(", ")
            ));
        }
    }
    Ok(order_all(surfaces)?
        .into_iter()
        .filter(|s| selected.contains(s))
        .collect())
}

fn describe_cycle(surfaces: &IndexMap<String, Surface>, done: &[String]) -> String {
    // Every remaining surface waits on another remaining one, so walking
    // first-pending dependencies must revisit a surface: that loop is a cycle.
    let pending = |name: &str| -> Option<String> {
        surfaces[name]
            .depends_on
            .iter()
            .find(|d| !done.contains(d))
            .cloned()
    };
    let start = surfaces
        .keys()
        .find(|n| !done.contains(n))
        .expect("a cycle leaves surfaces pending")
        .clone();
    let mut path = vec![start];
    loop {
        let last = path.last().expect("path starts non-empty");
        let next = pending(last).expect("a pending surface has a pending dependency");
        if let Some(pos) = path.iter().position(|n| *n == next) {
            let mut cycle: Vec<String> = path[pos..].to_vec();
            cycle.push(next);
            return format!(
                "surfaces depend on each other in a cycle: {}; remove one of these depends_on entries",
                cycle.join(" -> ")
            );
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surfaces(spec: &[(&str, &[&str])]) -> IndexMap<String, Surface> {
        spec.iter()
            .map(|(name, deps)| {
                let surface = Surface {
                    depends_on: deps.iter().map(|d| d.to_string()).collect(),
                    ..Surface::default()
                };
                (name.to_string(), surface)
            })
            .collect()
    }

    #[test]
    fn seed_order() {
        // The contract's deploy-all: backend, then web, then website, then miniapp.
        let s = surfaces(&[
            ("miniapp", &[]),
            ("website", &[]),
            ("web", &["backend"]),
            ("backend", &[]),
        ]);
        // Ties go by manifest order, so miniapp would come first here...
        assert_eq!(
            order_all(&s).unwrap(),
            ["miniapp", "website", "backend", "web"]
        );
        // ...and the seed lists them in its own order.
        let s = surfaces(&[
            ("backend", &[]),
            ("web", &["backend"]),
            ("website", &[]),
            ("miniapp", &[]),
        ]);
        assert_eq!(
            order_all(&s).unwrap(),
            ["backend", "web", "website", "miniapp"]
        );
    }

    #[test]
    fn dependencies_come_first_whatever_the_file_order() {
        let s = surfaces(&[("c", &["b"]), ("b", &["a"]), ("a", &[]), ("d", &[])]);
        assert_eq!(order_all(&s).unwrap(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn selected_surfaces_keep_dependency_order() {
        let s = surfaces(&[("web", &["backend"]), ("backend", &[]), ("website", &[])]);
        let picked = order_selected(&s, &["web".into(), "backend".into()]).unwrap();
        assert_eq!(picked, ["backend", "web"]);
        let err = order_selected(&s, &["wbe".into()]).unwrap_err();
        assert!(
            err.contains("`wbe`") && err.contains("web, backend, website"),
            "{err}"
        );
    }

    #[test]
    fn cycles_are_named() {
        let s = surfaces(&[("a", &[]), ("b", &["c"]), ("c", &["d"]), ("d", &["b"])]);
        let err = order_all(&s).unwrap_err();
        assert!(err.contains("b -> c -> d -> b"), "{err}");
        let s = surfaces(&[("self", &["self"])]);
        assert!(order_all(&s).unwrap_err().contains("self -> self"));
    }
}
