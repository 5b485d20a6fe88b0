//! Order enrichment: orders (keyed by customer id) joined with a customers
//! table; matched orders go to `enriched`, the others to `unmatched`, and
//! running totals per customer tier (as text), through the `by-tier`
//! repartition, to `totals`: the latest total of each tier once per commit
//! (a record cache, as Kafka Streams' `aggregate` has by default).

use serde::{Deserialize, Serialize};
use weir_sdk::{Aggregation, Context, Error, Json, Processor, Record, Sink, StoreSpec, Table};
use weir_sdk::{TaskInfo, Topology};

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
            .table(
                "customers",
                StoreSpec::kv("customer-table")
                    .formats::<String, Json<Customer>>()
                    .source_as_changelog(),
            )
            .repartition("by-tier")
            .store(StoreSpec::kv("tier-totals").formats::<String, u64>())
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
                .emit_to(Sink::<String, String>::open("totals")?, u64::to_string),
        })
    }

    fn process(&mut self, record: Record, ctx: &mut Context) -> Result<(), Error> {
        if self.customers.update(&record)? {
            return Ok(());
        }
        if (self.by_tier.aggregate(&record, || 0, |sum, n| sum + n)?).is_some() {
            return Ok(()); // a total, sent by the record cache
        }
        let (Some(customer_id), Some(Json::<Order>(order))) =
            (record.key_as()?, record.value_as()?)
        else {
            return Ok(());
        };
        match self.customers.get(&customer_id)? {
            Some(Json(customer)) => {
                self.by_tier.group_by(ctx, &customer.tier, &order.amount)?;
                self.enriched
                    .send(ctx, &customer_id, &Json(Enriched { order, customer }))
            }
            None => self.unmatched.send(ctx, &customer_id, &Json(order)),
        }
    }
}

weir_sdk::export_processor!(OrderEnrichment);
