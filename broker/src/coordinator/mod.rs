pub mod producer_id;
