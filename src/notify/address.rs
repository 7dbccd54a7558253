//! Email addresses as lettre reads them: the one parser for every address acctd accepts
//! (signup admins, billing emails, `email.from`), so that what is accepted is exactly
//! what the transport can later put into a message.

use lettre::message::{Mailbox, Mailboxes};

/// Why a text is not one email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Several addresses where one is expected (`a@x.co, b@y.co`).
    #[error("it lists {0} addresses")]
    List(usize),
    /// A display name or angle brackets where the bare address is stored.
    #[error("give the address alone, without a name, angle brackets or spaces")]
    Decorated,
    /// Not an address lettre can send to.
    #[error("not an email address")]
    Invalid,
}

/// One mailbox, possibly with a display name (`acctd <billing@example.com>`): what a
/// message's `From` may be.
///
/// # Errors
/// [`AddressError::List`] for several addresses, else [`AddressError::Invalid`].
pub fn mailbox(text: &str) -> Result<Mailbox, AddressError> {
    text.parse::<Mailbox>().map_err(|_| not_one(text))
}

/// One bare address (`user@host`), as acctd stores and later sends to it: a display name,
/// angle brackets or surrounding spaces are refused rather than dropped, so the stored
/// text is exactly what the caller gave and what a message's recipients will hold.
///
/// # Errors
/// [`AddressError::List`], [`AddressError::Decorated`] or [`AddressError::Invalid`].
pub fn recipient(text: &str) -> Result<(), AddressError> {
    let parsed = mailbox(text)?;
    if parsed.name.is_some() || parsed.email.to_string() != text {
        return Err(AddressError::Decorated);
    }
    Ok(())
}

/// Why `text`, which is not one mailbox, is refused: a list, or no address at all.
fn not_one(text: &str) -> AddressError {
    match text.parse::<Mailboxes>() {
        Ok(list) => match list.into_iter().count() {
            0 | 1 => AddressError::Invalid,
            n => AddressError::List(n),
        },
        Err(_) => AddressError::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bare_address_is_a_recipient() {
        for ok in ["a@acme.test", "first.last+tag@example.com", "ops@localhost"] {
            assert_eq!(recipient(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn an_address_list_is_refused_as_a_list() {
        assert_eq!(recipient("a@x.com, b@y.com"), Err(AddressError::List(2)));
        assert_eq!(
            recipient("a@x.com,b@y.com,c@z.com"),
            Err(AddressError::List(3))
        );
        assert_eq!(
            mailbox("acctd <a@x.com>, b@y.com").unwrap_err(),
            AddressError::List(2)
        );
    }

    #[test]
    fn a_display_name_is_refused_for_a_recipient_and_kept_for_a_sender() {
        for decorated in ["Eve <evil@x.co>", "<a@x.com>", " a@x.com", "a@x.com "] {
            assert_eq!(
                recipient(decorated),
                Err(AddressError::Decorated),
                "{decorated:?}"
            );
        }
        let from = mailbox("acctd <billing@example.com>").unwrap();
        assert_eq!(from.name.as_deref(), Some("acctd"));
        assert_eq!(from.email.to_string(), "billing@example.com");
    }

    #[test]
    fn invalid_addresses_are_refused() {
        for bad in [
            "",
            "a",
            "@x.com",
            "a@",
            "a@b@c.com",
            "a@b.co;evil@x.co",
            "a@x.com\r\nBcc: evil@y.com",
            "\"a b\"@x.com",
        ] {
            assert_eq!(recipient(bad), Err(AddressError::Invalid), "{bad:?}");
        }
    }
}
