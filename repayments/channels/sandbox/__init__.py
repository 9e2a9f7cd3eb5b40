"""A local stand-in for Alipay, WeChat Pay and UnionPay, over real HTTP.

It speaks the same protocols as the adapters (its own keys, its own ledger),
sends signed callbacks to the portal, and injects the faults the seed reports
describe: down, maintenance, latency, declines, time-out after charging,
dropped / duplicated / delayed / reordered callbacks, renamed fields and
settlement-file mismatches. Tests and `make run` drive it through /control/.
"""
