//! Which kernels to run: the default matrix, and the specs a developer can
//! name instead (`--kernel 6.18`, `--kernel host`, ...).

use std::fmt;

use super::archive::ImagePackage;

/// An upstream kernel version, e.g. 6.18.15, compared numerically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub Vec<u32>);

impl Version {
    /// From a Debian package version: `6.18.15-1~bpo13+1` -> 6.18.15.
    pub fn of_debian(v: &str) -> Option<Self> {
        let v = v.split_once(':').map_or(v, |(_, rest)| rest);
        let upstream = v.split(['-', '~', '+']).next()?;
        Self::parse(upstream)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let parts: Option<Vec<u32>> = s.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(Self)
    }

    /// Whether `self` is in `series` (6.18.15 is in 6.18 and in 6.18.15).
    fn within(&self, series: &Version) -> bool {
        self.0.starts_with(&series.0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// A kernel to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// The machine's own kernel, natively.
    Host,
    /// The newest cloud image of a series (6.18) or a version (6.18.15),
    /// optionally only those whose release carries `tag` (+deb13: built
    /// for Debian 13, as opposed to Debian 12's backports of the same
    /// series).
    Series {
        series: Version,
        tag: Option<String>,
    },
    /// The newest cloud image on offer.
    Newest,
}

impl Spec {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "host" => return Ok(Self::Host),
            "newest" => return Ok(Self::Newest),
            _ => {}
        }
        let (series, tag) = match s.split_once('+') {
            Some((series, tag)) => (series, Some(format!("+{tag}"))),
            None => (s, None),
        };
        let series = Version::parse(series).ok_or_else(|| {
            format!(
                "kernel '{s}': expected host, newest, a series like 6.18 or a version \
                 like 6.18.15 (optionally +deb13)"
            )
        })?;
        Ok(Self::Series { series, tag })
    }

    /// The image this spec picks: the newest complete one that matches.
    pub fn pick<'a>(&self, images: &'a [ImagePackage]) -> Option<&'a ImagePackage> {
        images
            .iter()
            .filter(|i| i.complete && self.matches(&i.version, &i.release))
            .max_by(|a, b| a.version.cmp(&b.version))
    }

    /// Whether a kernel of upstream `version` and `release` fits this spec
    /// (`newest` fits any).
    pub fn matches(&self, version: &Version, release: &str) -> bool {
        match self {
            Self::Host => false,
            Self::Newest => true,
            Self::Series { series, tag } => {
                version.within(series) && tag.as_ref().is_none_or(|t| release.contains(t.as_str()))
            }
        }
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => f.write_str("host"),
            Self::Newest => f.write_str("newest"),
            Self::Series { series, tag } => write!(f, "{series}{}", tag.as_deref().unwrap_or("")),
        }
    }
}

/// The default matrix and why each kernel is in it.
pub const DEFAULT: &[(&str, &str)] = &[
    ("6.1", "Debian 12's LTS kernel"),
    ("6.12+deb13", "Debian 13's LTS kernel"),
    ("6.16", "backports, the oldest after 6.12"),
    (
        "6.18",
        "backports: a 6.18 older than the host's 6.18.44, whose verifier behaves differently",
    ),
    (
        "7.2",
        "backports, the newest series before the newest whose modules are in the archive",
    ),
    ("newest", "backports' newest"),
    ("host", "this machine's own kernel, natively"),
];

/// The specs to run: `wanted` if any, else the default matrix.
pub fn specs(wanted: &[String]) -> Result<Vec<Spec>, String> {
    let mut out = Vec::new();
    let texts: Vec<&str> = if wanted.is_empty() {
        DEFAULT.iter().map(|(s, _)| *s).collect()
    } else {
        wanted
            .iter()
            .flat_map(|w| w.split([',', ' ']))
            .filter(|w| !w.is_empty())
            .collect()
    };
    for text in texts {
        let spec = Spec::parse(text)?;
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(release: &str, debian_version: &str, complete: bool) -> ImagePackage {
        ImagePackage {
            package: format!("linux-image-{release}"),
            release: release.into(),
            debian_version: debian_version.into(),
            version: Version::of_debian(debian_version).unwrap(),
            parts: vec![],
            complete,
        }
    }

    #[test]
    fn specs_pick_the_newest_complete_match() {
        let images = [
            image("6.1.0-47-cloud-amd64", "6.1.170-1", true),
            image("6.1.0-50-cloud-amd64", "6.1.176-1", true),
            image("6.12.95+deb12-cloud-amd64", "6.12.95-1~bpo12+1", true),
            image("6.12.117+deb13-cloud-amd64", "6.12.117-1", true),
            image("6.12.120+deb12-cloud-amd64", "6.12.120-1~bpo12+1", true),
            image("7.0.13+deb13-cloud-amd64", "7.0.13-1~bpo13+1", false),
            image("6.18.15+deb13-cloud-amd64", "6.18.15-1~bpo13+1", true),
        ];
        let pick = |s: &str| {
            Spec::parse(s)
                .unwrap()
                .pick(&images)
                .map(|i| i.release.clone())
        };
        assert_eq!(pick("6.1").as_deref(), Some("6.1.0-50-cloud-amd64"));
        assert_eq!(
            pick("6.12+deb13").as_deref(),
            Some("6.12.117+deb13-cloud-amd64")
        );
        assert_eq!(pick("6.12").as_deref(), Some("6.12.120+deb12-cloud-amd64"));
        assert_eq!(pick("7.0"), None, "incomplete images are never picked");
        assert_eq!(pick("newest").as_deref(), Some("6.18.15+deb13-cloud-amd64"));
        assert_eq!(pick("6.1.170").as_deref(), Some("6.1.0-47-cloud-amd64"));
        assert_eq!(pick("host"), None);
        assert!(Spec::parse("six").is_err());
    }

    #[test]
    fn debian_versions_give_upstream_versions() {
        let v = |s| Version::of_debian(s).unwrap().to_string();
        assert_eq!(v("6.18.15-1~bpo13+1"), "6.18.15");
        assert_eq!(v("6.1.176-1"), "6.1.176");
        assert_eq!(v("1:7.3.4-1"), "7.3.4");
        assert!(Version::parse("6.1") < Version::parse("6.12"));
    }

    #[test]
    fn the_default_matrix_parses_and_a_list_may_be_given() {
        assert_eq!(specs(&[]).unwrap().len(), DEFAULT.len());
        assert_eq!(
            specs(&["6.1, host".into(), "host".into()]).unwrap(),
            vec![Spec::parse("6.1").unwrap(), Spec::Host]
        );
    }
}
