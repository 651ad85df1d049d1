//! The id of a new deployment: the site code and the next 5 hex digits (`LAB00001`), as
//! Configuration Manager numbers them. Ids are never reused.

use crate::catalog::model::parse_site_code;
use crate::catalog::{DeploymentId, DeploymentIdError};

/// The id for a new deployment of a site: the site code and the next number after the highest
/// one of that site among `issued`, starting at 1 (`LAB00001`).
///
/// Ids are never reused as long as `issued` holds every id the site ever gave out (deleted
/// deployments included, or their high-water mark). Ids of other sites are ignored.
pub fn next_deployment_id<'a, I>(
    site_code: &str,
    issued: I,
) -> Result<DeploymentId, DeploymentIdError>
where
    I: IntoIterator<Item = &'a DeploymentId>,
{
    let code = parse_site_code(site_code)?;
    let code = std::str::from_utf8(&code).unwrap_or_default().to_string();
    let highest = issued
        .into_iter()
        .filter(|id| id.site_code() == code)
        .map(DeploymentId::number)
        .max()
        .unwrap_or(0);
    if highest >= DeploymentId::MAX_NUMBER {
        return Err(DeploymentIdError::Exhausted(code));
    }
    DeploymentId::new(&code, highest + 1)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn deployment_ids_are_site_code_and_five_hex_digits() {
        let ids = |list: &[&str]| -> Vec<DeploymentId> {
            list.iter().map(|s| s.parse().unwrap()).collect()
        };
        assert_eq!(
            next_deployment_id("LAB", &[]).unwrap().to_string(),
            "LAB00001"
        );
        let existing = ids(&["LAB00009", "LAB0000F", "ABC00100"]);
        assert_eq!(
            next_deployment_id("LAB", &existing).unwrap().to_string(),
            "LAB00010"
        );
        assert_eq!(
            next_deployment_id("lab", &existing).unwrap().to_string(),
            "LAB00010"
        );
        assert_eq!(
            next_deployment_id("ABC", &existing).unwrap().to_string(),
            "ABC00101"
        );
        for bad in ["LA", "LABS", "L-B", ""] {
            assert_eq!(
                next_deployment_id(bad, &existing),
                Err(DeploymentIdError::SiteCode(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(
            next_deployment_id("LAB", &ids(&["LABFFFFF"])),
            Err(DeploymentIdError::Exhausted("LAB".into()))
        );
    }

    proptest! {
        #[test]
        fn next_deployment_id_is_above_every_issued_id_of_its_site(
            numbers in proptest::collection::vec(0u32..0xF_FFFF, 0..20),
        ) {
            let issued: Vec<DeploymentId> = numbers
                .iter()
                .map(|n| DeploymentId::new("LAB", *n).unwrap())
                .collect();
            let next = next_deployment_id("LAB", &issued).unwrap();
            prop_assert!(issued.iter().all(|id| *id < next));
            let text = next.to_string();
            prop_assert_eq!(text.len(), 8);
            prop_assert!(text[3..].bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
            prop_assert_eq!(text.parse::<DeploymentId>().unwrap(), next);
        }
    }
}
