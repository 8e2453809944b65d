"""Writes for datasets, one module per sub-area: `curation` (create, terms, status), `eligibility`
(which works may join, what each weighs), `contributing`, `opt_outs`, `snapshots`, `sales`, `notices`.

Invariants:
- an item joins only when its work's current offer allows `ai-train` and the dataset's terms are not
  looser than the work's (datasets/terms.py defines "looser"); every snapshot re-checks all of them;
- a do-not-train flag (on a work or on a creator) takes the work out of every dataset at once, and no
  snapshot or sale includes it afterwards;
- a snapshot is written once and never changed; an opt-out after it is recorded against it;
- a sale is one database transaction: the licence row, one revenue item per work (held on the vendor's
  prepaid balance by a conditional UPDATE), the curator's part, and the receipt. A short balance raises
  InsufficientFunds (HTTP 402) and changes nothing;
- the price is allocated once over the curator and every work (largest remainder): the parts sum to the
  price exactly and each is within one minor unit of its exact share. A text dataset weighing by tokens
  gives each work its tokens (counted by the retrieval's tokenizer) as its weight.
"""
