//! Text as people read it. Ids, users and names reach the journal and the
//! reports from labels, CI variables and plugins, so they may hold any
//! UTF-8: everything here cuts on character boundaries, never on bytes.

/// An ID as people read it: without `sha256:`, its first 12 characters.
/// A pinned reference (`repo@sha256:…`, a swarm's) reads as its digest.
pub fn short_id(id: &str) -> &str {
    let id = id.rsplit_once('@').map_or(id, |(_, digest)| digest);
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    match id.char_indices().nth(12) {
        Some((at, _)) => &id[..at],
        None => id,
    }
}

#[cfg(test)]
mod tests {
    use super::short_id;

    #[test]
    fn short_ids_count_characters_not_bytes() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id(""), "");
        assert_eq!(short_id("-"), "-");
        assert_eq!(
            short_id("10.231.3.2:5000/p/api@sha256:c733478d9ec2d356ef82"),
            "c733478d9ec2"
        );
        assert_eq!(short_id("sha256:ééééééééééééééé"), "éééééééééééé");
        assert_eq!(short_id("déploiement-ü-日本語"), "déploiement-");
        assert_eq!(
            short_id("日本語の画像識別子です、長い"),
            "日本語の画像識別子です、"
        );
    }
}
