//! Region resolution and the supported-region list (spec §1).

/// Regions where Mantle is served (exact match).
pub const SUPPORTED_REGIONS: [&str; 12] = [
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ap-northeast-1",
    "ap-south-1",
    "ap-southeast-3",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-south-1",
    "eu-north-1",
    "sa-east-1",
];

/// The region used when nothing is configured.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where the region came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionSource {
    /// Provider config `region`.
    Config,
    /// `AWS_REGION`.
    AwsRegion,
    /// `AWS_DEFAULT_REGION`.
    AwsDefaultRegion,
    /// Nothing set: `us-east-1`.
    Default,
}

/// A resolved region, or why it cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionChoice {
    /// Well-formed and supported.
    Supported(String, RegionSource),
    /// Well-formed but Mantle does not serve it: the provider is skipped.
    Unsupported(String, RegionSource),
    /// Not a region name (it would go into a host name): refused.
    Malformed(String, RegionSource),
}

/// `^[a-z]{2}(-[a-z]+)+-[0-9]+$`, checked without a regex engine.
pub fn is_well_formed(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    if parts.len() < 3 {
        return false;
    }
    let (first, rest) = (parts[0], &parts[1..]);
    let (last, middle) = rest.split_last().expect("at least two parts");
    first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && middle
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
}

fn non_blank(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Resolves the region: config, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else us-east-1.
/// `env` reads an environment variable (injected for tests). `extra` are regions the config
/// adds to the built-in list (`extraRegions`, spec §2b).
pub fn resolve(
    config_region: Option<&str>,
    extra: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> RegionChoice {
    let (region, source) = if let Some(r) = non_blank(config_region.map(str::to_string)) {
        (r, RegionSource::Config)
    } else if let Some(r) = non_blank(env("AWS_REGION")) {
        (r, RegionSource::AwsRegion)
    } else if let Some(r) = non_blank(env("AWS_DEFAULT_REGION")) {
        (r, RegionSource::AwsDefaultRegion)
    } else {
        (DEFAULT_REGION.to_string(), RegionSource::Default)
    };
    if !is_well_formed(&region) {
        RegionChoice::Malformed(region, source)
    } else if SUPPORTED_REGIONS.contains(&region.as_str()) || extra.contains(&region) {
        RegionChoice::Supported(region, source)
    } else {
        RegionChoice::Unsupported(region, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_cfg(
        config_region: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> RegionChoice {
        resolve(config_region, &[], env)
    }

    #[test]
    fn extra_regions_extend_the_built_in_list() {
        let extra = vec!["ap-southeast-2".to_string(), "us-gov-west-1".to_string()];
        let none = |_: &str| None;
        assert_eq!(
            resolve(Some("ap-southeast-2"), &extra, none),
            RegionChoice::Supported("ap-southeast-2".into(), RegionSource::Config)
        );
        assert_eq!(
            resolve(Some("us-gov-west-1"), &extra, none),
            RegionChoice::Supported("us-gov-west-1".into(), RegionSource::Config)
        );
        assert_eq!(
            resolve(Some("ap-southeast-2"), &[], none),
            RegionChoice::Unsupported("ap-southeast-2".into(), RegionSource::Config)
        );
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn resolution_order_and_blanks() {
        let env = env_of(&[
            ("AWS_REGION", " eu-west-1 "),
            ("AWS_DEFAULT_REGION", "us-west-2"),
        ]);
        assert_eq!(
            resolve_cfg(Some("ap-south-1"), &env),
            RegionChoice::Supported("ap-south-1".into(), RegionSource::Config)
        );
        assert_eq!(
            resolve_cfg(Some("  "), &env),
            RegionChoice::Supported("eu-west-1".into(), RegionSource::AwsRegion)
        );
        let env = env_of(&[("AWS_REGION", "   "), ("AWS_DEFAULT_REGION", "us-west-2")]);
        assert_eq!(
            resolve(None, &[], &env),
            RegionChoice::Supported("us-west-2".into(), RegionSource::AwsDefaultRegion)
        );
        assert_eq!(
            resolve(None, &[], env_of(&[])),
            RegionChoice::Supported("us-east-1".into(), RegionSource::Default)
        );
    }

    #[test]
    fn all_twelve_supported_and_others_skipped() {
        for r in SUPPORTED_REGIONS {
            assert!(
                matches!(
                    resolve_cfg(Some(r), env_of(&[])),
                    RegionChoice::Supported(..)
                ),
                "{r}"
            );
        }
        assert!(matches!(
            resolve_cfg(Some("ca-central-1"), env_of(&[])),
            RegionChoice::Unsupported(..)
        ));
        assert!(matches!(
            resolve_cfg(Some("us-gov-west-1"), env_of(&[])),
            RegionChoice::Unsupported(..)
        ));
    }

    #[test]
    fn malformed_regions_refused() {
        for bad in [
            "US-EAST-1",
            "us-east-1.evil.com",
            "us-east",
            "u-east-1",
            "us--1",
            "us-east-1/x",
            "us-east-1a",
            "useast1",
        ] {
            assert!(!is_well_formed(bad), "{bad}");
            assert!(
                matches!(
                    resolve_cfg(Some(bad), env_of(&[])),
                    RegionChoice::Malformed(..)
                ),
                "{bad}"
            );
        }
        assert!(is_well_formed("ap-southeast-3"));
        assert!(is_well_formed("us-gov-west-1"));
    }
}
