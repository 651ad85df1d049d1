//! The media variables file: `KEY=VALUE` lines written by the media builder (docs/media.md),
//! with the Configuration Manager names `SMSTSServerURL`, `SMSTSMediaType`,
//! `SMSTSPreferredAdvertID` and `SMSTSMediaPassword`, and netdeploy's `NetdeployMediumKey` and
//! `NetdeployServerPin`. The one parser, and the key rules it
//! shares with the writer, are the contract in `netdeploy_wire::variables`.

pub use netdeploy_wire::variables::{
    parse, LineError, MediaType, Variables, MEDIA_PASSWORD, MEDIA_TYPE, MEDIUM_KEY,
    PREFERRED_ADVERT_ID, SERVER_PIN, SERVER_URL,
};
