//! Values an installation generates once and keeps (`installation_settings`).

use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Alias, Expr, ExprTrait, OnConflict, Query},
};

use crate::config::Secret;

const TABLE: &str = "installation_settings";
const SANDBOX_SECRET: &str = "sandbox_secret_key";

/// The sandbox's secret key for this installation: generated on first use
/// and stored, so every process on the same database agrees on it and no
/// two installations share one.
pub async fn sandbox_secret(db: &impl ConnectionTrait) -> Result<Secret, DbErr> {
    let fresh = format!("sk_test_{}", uuid::Uuid::new_v4().simple());
    let insert = Query::insert()
        .into_table(Alias::new(TABLE))
        .columns([Alias::new("name"), Alias::new("value")])
        .values_panic([SANDBOX_SECRET.into(), fresh.into()])
        .on_conflict(
            OnConflict::column(Alias::new("name"))
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    db.execute(&insert).await?;
    let select = Query::select()
        .column(Alias::new("value"))
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("name")).eq(SANDBOX_SECRET))
        .to_owned();
    let row = db
        .query_one(&select)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("{TABLE}.{SANDBOX_SECRET}")))?;
    Ok(Secret::new(row.try_get::<String>("", "value")?))
}
