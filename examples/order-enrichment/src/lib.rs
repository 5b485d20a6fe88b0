//! Order enrichment: orders (keyed by customer id) joined with a customers
//! table, to `enriched` or `unmatched`; running totals per customer tier,
//! through the `by-tier` repartition, to `totals` (latest per commit).

use serde::{Deserialize, Serialize};
use weir_sdk::prelude::*;

pub struct OrderEnrichment {
    customers: Table<String, Json<Customer>>,
    enriched: Sink<String, Json<Enriched>>,
    unmatched: Sink<String, Json<Order>>,
    by_tier: Aggregation<String, u64, u64>,
}

impl Processor for OrderEnrichment {
    fn describe() -> Topology {
        Topology::new("order-enrichment")
            .source("orders")
            .source_table::<String, Json<Customer>>("customers", "customer-table")
            .aggregation::<String, u64>("by-tier", "tier-totals")
            .sink("enriched", "orders-enriched")
            .sink("unmatched", "orders-unmatched")
            .sink("totals", "tier-totals")
    }

    fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
        Ok(OrderEnrichment {
            customers: Table::open("customers", "customer-table")?,
            enriched: Sink::open("enriched")?,
            unmatched: Sink::open("unmatched")?,
            by_tier: Aggregation::open("by-tier", "tier-totals")?
                .emit_to(Sink::open("totals")?, u64::to_string),
        })
    }

    fn process(&mut self, record: Record, ctx: &mut Context) -> Result<(), Error> {
        let total = self.by_tier.aggregate(&record, || 0, |sum, n| sum + n)?;
        if total.is_some() || self.customers.update(&record)? {
            return Ok(()); // a total (sent by the record cache) or a customer
        }
        let (Some(id), Some(Json::<Order>(order))) = (record.key_as()?, record.value_as()?) else {
            return Ok(());
        };
        match self.customers.get(&id)? {
            Some(Json(customer)) => {
                self.by_tier.group_by(ctx, &customer.tier, &order.amount)?;
                self.enriched
                    .send(ctx, &id, &Json(Enriched { order, customer }))
            }
            None => self.unmatched.send(ctx, &id, &Json(order)),
        }
    }
}

weir_sdk::export_processor!(OrderEnrichment);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub name: String,
    pub tier: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enriched {
    pub order: Order,
    pub customer: Customer,
}
