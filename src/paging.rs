//! Keyset paging, one kind for every listing (keys, users, audit events):
//! items in ascending `(instant, id)` order, at most `take` of them, after the
//! item `start_with` (exclusive).

use chrono::NaiveDateTime;
use diesel::dsl;
use diesel::expression::{AsExpression, Expression};
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};

/// The accepted range of `take`.
pub const TAKE_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;

/// How many items a listing with a default returns when `take` is not given.
pub const DEFAULT_TAKE: u32 = 100;

/// A page of a listing: at most `take` items after the item `start_with`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub take: Option<u32>,
    pub start_with: Option<String>,
}

impl Page {
    /// No paging asked for: the whole listing.
    pub fn is_whole(&self) -> bool {
        self.take.is_none() && self.start_with.is_none()
    }

    /// `take`, or [`DEFAULT_TAKE`] for listings that are always paged.
    pub fn take_or_default(&self) -> u32 {
        self.take.unwrap_or(DEFAULT_TAKE)
    }
}

/// Where a page starts: the `(instant, id)` of the item `start_with` names.
pub type Cursor = (NaiveDateTime, String);

/// `at = cursor.0 AND id > cursor.1`.
type TieAfter<At, Id> = dsl::And<dsl::Eq<At, NaiveDateTime>, dsl::Gt<Id, String>>;

/// The items strictly after `cursor` in `(at, id)` order.
pub fn after<At, Id>(
    at: At,
    id: Id,
    (cursor_at, cursor_id): Cursor,
) -> dsl::Or<dsl::Gt<At, NaiveDateTime>, TieAfter<At, Id>>
where
    At: Expression<SqlType = Timestamp> + ExpressionMethods + Copy,
    Id: Expression<SqlType = Text> + ExpressionMethods,
    NaiveDateTime: AsExpression<Timestamp>,
    String: AsExpression<Text>,
{
    at.gt(cursor_at).or(at.eq(cursor_at).and(id.gt(cursor_id)))
}
