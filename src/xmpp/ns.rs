//! Every XML namespace Parley speaks, one constant each, with the spec that defines it.
//! Holds no logic.

/// RFC 6120 client stanzas.
pub const CLIENT: &str = "jabber:client";
/// RFC 6120 stream elements (`stream:stream`, `stream:features`, `stream:error`).
pub const STREAMS: &str = "http://etherx.jabber.org/streams";
/// RFC 6120 stream error conditions.
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// RFC 6120 stanza error conditions.
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// RFC 6120 STARTTLS.
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// RFC 6120 SASL.
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// XEP-0440 SASL Channel-Binding Type Capability (stream feature).
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// XEP-0077 In-Band Registration (the iq payload).
pub const REGISTER: &str = "jabber:iq:register";
/// XEP-0077 In-Band Registration (the stream feature).
pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
/// RFC 6120 resource binding.
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// RFC 3921 legacy session establishment (answered, does nothing).
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// RFC 7395 WebSocket framing (`<open/>`, `<close/>`).
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// RFC 6121 roster.
pub const ROSTER: &str = "jabber:iq:roster";
/// XEP-0199 XMPP Ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0030 Service Discovery (info).
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030 Service Discovery (items).
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0280 Message Carbons.
pub const CARBONS: &str = "urn:xmpp:carbons:2";
/// XEP-0297 Stanza Forwarding (carbons wrap messages in it).
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0352 Client State Indication.
pub const CSI: &str = "urn:xmpp:csi:0";
/// Tigase mobile optimisations v2 (ConnectyCube `markInactive`/`markActive`).
pub const TIGASE_MOBILE: &str = "http://tigase.org/protocol/mobile#v2";
/// XEP-0012 Last Activity.
pub const LAST: &str = "jabber:iq:last";
/// ConnectyCube status streaming (subscribe to a user's last-activity changes).
pub const CC_STATUS_STREAMING: &str = "https://connectycube.com/protocol/status_streaming";
/// XEP-0203 Delayed Delivery.
pub const DELAY: &str = "urn:xmpp:delay";
/// XEP-0333 Chat Markers.
pub const CHAT_MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0308 Last Message Correction.
pub const CORRECTION: &str = "urn:xmpp:message-correct:0";
/// ConnectyCube message deletion (`<remove id=…/>`).
pub const MESSAGE_DELETE: &str = "urn:xmpp:message-delete:0";
/// XEP-0160 / XEP-0013 offline message handling (advertised as `msgoffline`).
pub const MSGOFFLINE: &str = "msgoffline";
/// XEP-0016 Privacy Lists.
pub const PRIVACY: &str = "jabber:iq:privacy";
/// XEP-0191 Blocking Command.
pub const BLOCKING: &str = "urn:xmpp:blocking";
/// XEP-0191 application error condition (`<blocked/>`).
pub const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
/// XEP-0198 Stream Management.
pub const SM: &str = "urn:xmpp:sm:3";
/// XEP-0045 Multi-User Chat (join requests, service and room features).
pub const MUC: &str = "http://jabber.org/protocol/muc";
/// XEP-0045 Multi-User Chat, user namespace (occupant presence, status codes).
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// XEP-0085 Chat State Notifications.
pub const CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0092 Software Version.
pub const VERSION: &str = "jabber:iq:version";
/// XEP-0202 Entity Time.
pub const TIME: &str = "urn:xmpp:time";
/// XEP-0313 Message Archive Management.
pub const MAM: &str = "urn:xmpp:mam:2";
/// XEP-0313 `before-id`, `after-id` and `ids` query fields (a disco feature only).
pub const MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
/// XEP-0059 Result Set Management (paging archive queries).
pub const RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0004 Data Forms (archive query fields).
pub const DATA_FORMS: &str = "jabber:x:data";
/// XEP-0455 Service Outage Status.
pub const SOS: &str = "urn:xmpp:sos:0";
/// XEP-0359 Unique and Stable Stanza IDs.
pub const SID: &str = "urn:xmpp:sid:0";
/// XEP-0054 vcard-temp.
pub const VCARD: &str = "vcard-temp";
/// XEP-0049 Private XML Storage.
pub const PRIVATE: &str = "jabber:iq:private";
/// XEP-0060 Publish-Subscribe (PEP's requests: publish, retract, items).
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 owner use cases (delete a node, its configuration).
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// XEP-0060 event notifications.
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0060 application error conditions (`<precondition-not-met/>`, …).
pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0060 publish-options form type.
pub const PUBSUB_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// XEP-0060 node configuration form type.
pub const PUBSUB_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
/// XEP-0115 Entity Capabilities.
pub const CAPS: &str = "http://jabber.org/protocol/caps";
/// XEP-0045 Multi-User Chat, owner namespace (room configuration, destruction).
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0045 Multi-User Chat, admin namespace (affiliations and roles).
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// XEP-0045 room configuration form type.
pub const MUC_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
/// XEP-0410 MUC Self-Ping (a room feature: pings to one's own occupant JID are answered).
pub const MUC_SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
/// XEP-0425 Message Moderation, current version.
pub const MODERATE_1: &str = "urn:xmpp:message-moderate:1";
/// XEP-0425 Message Moderation, version 0 (inside an XEP-0422 `<apply-to/>`).
pub const MODERATE_0: &str = "urn:xmpp:message-moderate:0";
/// XEP-0424 Message Retraction, current version.
pub const RETRACT_1: &str = "urn:xmpp:message-retract:1";
/// XEP-0424 Message Retraction, version 0.
pub const RETRACT_0: &str = "urn:xmpp:message-retract:0";
/// XEP-0422 Message Fastening (wraps XEP-0425 version 0).
pub const FASTEN: &str = "urn:xmpp:fasten:0";
/// XEP-0363 HTTP File Upload.
pub const HTTP_UPLOAD: &str = "urn:xmpp:http:upload:0";
/// XEP-0050 Ad-Hoc Commands.
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
