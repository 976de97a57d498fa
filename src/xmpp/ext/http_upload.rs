//! XEP-0363 HTTP File Upload: the server JID is the upload service (disco: identity
//! `store/file`, the feature, and an XEP-0128 form with the user's `max-file-size`, which
//! slixmpp's `find_upload_service` and Conversations read). A `<request filename size
//! content-type>` is answered with a `<slot>`: a PUT URL on the application's store and the
//! blob's GET URL. The rules (name, content type, size, uploads in progress) are the files
//! service's, the same as `POST /blobs`; this file only parses and renders. Must not grant a
//! slot the REST API would refuse, nor answer for another user's JID.

use crate::files::FilesError;
use crate::xmpp::dispatch::{
    load_actor, BoxFuture, Extension, Kind, Registration, Reply, Request, Spec,
};
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0363 HTTP File Upload (`urn:xmpp:http:upload:0`)",
    status: "complete",
    notes: "service on the server JID (identity `store/file`, `max-file-size` form); same limits as `POST /blobs`; `not-acceptable` + `<file-too-large>` past the size, `not-acceptable` for a type not allowed, `resource-constraint` past `storage.max_unfinished_per_user`; PUT to Parley (disk, exactly `size` bytes, signed, expiring) or a pre-signed S3 PUT; GET URL public (unguessable uid)",
    ejabberd: "mod_http_upload",
    prosody: "mod_http_file_share",
}];

pub const HANDLERS: &[Registration] = &[Registration {
    kind: Kind::IqGet,
    ns: ns::HTTP_UPLOAD,
    handler: Some(request_slot),
    features: &[ns::HTTP_UPLOAD],
    for_users: false,
}];

/// The content type of a request that names none (XEP-0363 §4: it is optional).
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The service's disco identity (XEP-0363 §3), on the server JID.
pub fn identity() -> Element {
    Element::new("identity", ns::DISCO_INFO)
        .with_attr("category", "store")
        .with_attr("type", "file")
        .with_attr("name", "HTTP File Upload")
}

/// The XEP-0128 form telling the asker's largest file (their application's limit).
pub fn disco_form(services: &Services, app: crate::model::AppId) -> Element {
    let max = services.files.limits(app).max_bytes;
    let field = |var: &str, value: String| {
        Element::new("field", ns::DATA_FORMS)
            .with_attr("var", var)
            .with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
    };
    Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "result")
        .with_child(field("FORM_TYPE", ns::HTTP_UPLOAD.to_owned()).with_attr("type", "hidden"))
        .with_child(field("max-file-size", max.to_string()))
}

fn request_slot(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let p = req.payload;
        let bad = |why: &str| StanzaError::bad_request().with_text(why.to_owned());
        if p.name != "request" {
            return Err(bad("expected <request/>"));
        }
        let filename = p
            .attr("filename")
            .filter(|f| !f.trim().is_empty())
            .ok_or_else(|| bad("the filename attribute is required"))?;
        let size: u64 = p
            .attr("size")
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("the size attribute must be a number of bytes"))?;
        let content_type = p
            .attr("content-type")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .unwrap_or(DEFAULT_CONTENT_TYPE);
        let mut app = None;
        let actor = load_actor(req.services, req.user, &mut app).await?;
        let slot = req
            .services
            .files
            .slot(&actor, filename, size, content_type)
            .await
            .map_err(refusal)?;
        // No <header/>: the PUT URL's signature is the permission.
        let put = Element::new("put", ns::HTTP_UPLOAD).with_attr("url", slot.put_url);
        Ok(Some(
            Element::new("slot", ns::HTTP_UPLOAD)
                .with_child(put)
                .with_child(Element::new("get", ns::HTTP_UPLOAD).with_attr("url", slot.get_url)),
        ))
    })
}

/// The files service's refusals as XEP-0363 §4 answers them.
fn refusal(e: FilesError) -> StanzaError {
    match e {
        FilesError::TooLarge { max } => StanzaError::not_acceptable()
            .with_text(format!(
                "File too large. The maximum file size is {max} bytes"
            ))
            .with_app_element(Element::new("file-too-large", ns::HTTP_UPLOAD).with_child(
                Element::new("max-file-size", ns::HTTP_UPLOAD).with_text(max.to_string()),
            )),
        FilesError::Invalid { .. } => StanzaError::not_acceptable().with_text(e.to_string()),
        FilesError::Quota(m) => StanzaError::resource_constraint().with_text(m),
        FilesError::Forbidden(_) | FilesError::NotFound(_) => StanzaError::forbidden(),
        FilesError::Chat(c) => (&c).into(),
        FilesError::Db(_) | FilesError::Store(_) => {
            tracing::error!(error = %e, "XEP-0363 slot");
            StanzaError::internal_server_error()
        }
    }
}
