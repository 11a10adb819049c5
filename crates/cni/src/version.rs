/// A CNI spec version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// CNI 0.4.0: CHECK, and `prevResult` on DEL.
    pub const V0_4_0: Version = Version(0, 4, 0);
    /// CNI 1.1.0: STATUS and GC.
    pub const V1_1_0: Version = Version(1, 1, 0);

    /// Parses `x.y.z` (a missing patch or minor counts as 0).
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        if parts.next().is_some() {
            return None;
        }
        Some(Version(major, minor, patch))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(Version::parse("1.0.0"), Some(Version(1, 0, 0)));
        assert_eq!(Version::parse("0.3"), Some(Version(0, 3, 0)));
        assert!(Version::parse("1.0.0.1").is_none());
        assert!(Version::parse("one").is_none());
        assert!(Version(0, 4, 0) < Version(1, 0, 0));
        assert!(Version(1, 1, 0) > Version(1, 0, 9));
    }
}
