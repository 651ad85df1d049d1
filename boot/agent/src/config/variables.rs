//! The media variables file: `KEY=VALUE` lines written by the media builder (docs/media.md),
//! or by the server for Windows PE booted over the network (`netdeploy.ini`), with the
//! Configuration Manager names `SMSTSServerURL`, `SMSTSMediaType`, `SMSTSPreferredAdvertID`
//! and `SMSTSMediaPassword`, and netdeploy's `NetdeployMediumKey`, `NetdeployServerPin`,
//! `NetdeployMAC` and `NetdeployRunToken`. The one parser, and the key rules it shares with the
//! writer, are the contract in `netdeploy_wire::variables`.

pub use netdeploy_wire::variables::{
    parse, LineError, MediaType, Variables, MAC, MEDIA_PASSWORD, MEDIA_TYPE, MEDIUM_KEY,
    PREFERRED_ADVERT_ID, RUN_TOKEN, SERVER_PIN, SERVER_URL,
};
