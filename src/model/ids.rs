//! Integer identifiers of applications, users and sessions, kept apart by type so an
//! application id can never be passed where a user id is expected; and [`UserKey`], a user
//! together with their application.

use std::fmt;
use std::str::FromStr;

macro_rules! int_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse::<i64>().map($name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i64(self.0)
            }
        }
    };
}

int_id!(
    /// An application (tenant): every user, session and dialog belongs to one.
    AppId
);
int_id!(
    /// A user of one application; ids are unique across applications.
    UserId
);
int_id!(
    /// A REST session (app session or user session).
    SessionId
);

/// A user of one application: the key of everything live about a user (connections, rooms,
/// subscriptions). The XMPP adapter adds how it is written in a JID (`{user_id}-{app_id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserKey {
    pub app: AppId,
    pub user: UserId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_with_surrounding_spaces() {
        assert_eq!(" 1002".parse::<UserId>().ok(), Some(UserId(1002)));
        assert!("10x".parse::<UserId>().is_err());
    }
}
