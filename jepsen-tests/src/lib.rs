//! Real-cluster fault-injection tests (to come): drive `dynamo` node processes, inject faults, judge histories with `dynamo-checker`.
