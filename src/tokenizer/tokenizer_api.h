// tokenizer_api.h: for the rest of the library (the public model and generation API, the CLI):
// the internal tokenizer behind a public rill_tokenizer.
#pragma once
#include "rill.h"
#include "tokenizer/tokenizer.h"

tokenizer *rill_tokenizer_inner(rill_tokenizer *t);
