//! Presence at the edge (SPEC §7): who a stream is on `presence-*`
//! channels, and `GET /channels/{channel}/presence`.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::HeaderValue;

use crate::auth::Access;
use crate::body::{Body, Response};
use crate::domain::ChannelName;
use crate::error::ApiError;
use crate::hub::presence::{is_presence_channel, Member};
use crate::state::State;

/// The member a stream of `access` is on the presence channels among
/// `channels` (already allowed by `check_subscribe`): none on other
/// channels, none for the publish token (it watches), the token's `sub` and
/// `info` for a JWT. A JWT without `sub` names nobody, so it is refused.
pub fn member(access: &Access, channels: &[ChannelName]) -> Result<Option<Member>, ApiError> {
    let presence: Vec<ChannelName> = channels
        .iter()
        .filter(|c| is_presence_channel(c))
        .cloned()
        .collect();
    if presence.is_empty() || access.is_publish_token() {
        return Ok(None);
    }
    match access.sub() {
        Some(sub) => Ok(Some(Member::new(sub, access.info().map(|raw| raw.get())))),
        None => Err(ApiError::NoMember { channels: presence }),
    }
}

/// `GET /channels/{channel}/presence`: `{"channel","count","members":[{"sub",
/// "info","connections"}]}`, for a subscribe grant on the channel or the
/// publish token, never kept by a shared cache. HEAD answers the same status
/// and headers, `Content-Length` included (hyper leaves the body out).
pub async fn roster(state: &State, req: &Parts, raw_channel: &str) -> Result<Response, ApiError> {
    let channel = ChannelName::from_path(raw_channel).map_err(ApiError::BadChannel)?;
    if !is_presence_channel(&channel) {
        return Err(ApiError::NotPresenceChannel);
    }
    state
        .auth
        .access(req)
        .await?
        .check_subscribe(std::slice::from_ref(&channel))?;
    let mut response = http::Response::new(Body::from(state.hub.presence_roster(&channel)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(response)
}
