# libFuzzer targets for every parser the gateway runs on untrusted bytes.
# `make fuzz` builds them into build/fuzz/ and runs each for FUZZ_SECONDS
# (default 30) from its seed corpus in fuzz/seeds/.
FUZZ_SECONDS ?= 30
FZ := build/fuzz
FCC := clang
FUZZ_FLAGS := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=gnu11 -D_GNU_SOURCE -Igateway \
  $(shell pkg-config --cflags yajl libxml-2.0 libxslt libpq)
FUZZ_LIBS := $(shell pkg-config --libs libnghttp2 yajl libxml-2.0 libxslt libexslt) -lhttp_parser -lpthread
CORE := gateway/core/alloc.c gateway/core/health.c gateway/core/buf.c gateway/core/err.c gateway/core/log.c gateway/core/metrics.c gateway/core/diag.c gateway/core/file.c gateway/core/query.c \
  gateway/http/req.c

TARGETS := $(FZ)/fuzz_h1 $(FZ)/fuzz_h2 $(FZ)/fuzz_conf $(FZ)/fuzz_hl7v2 $(FZ)/fuzz_fhir $(FZ)/fuzz_soap $(FZ)/fuzz_dconf $(FZ)/fuzz_mllp $(FZ)/fuzz_cer $(FZ)/fuzz_sched $(FZ)/fuzz_owner

.PHONY: fuzz-build fuzz-run
fuzz-run: fuzz-build
	@for t in h1 h2 conf hl7v2 fhir soap dconf mllp cer sched owner; do \
	  mkdir -p $(FZ)/corpus-$$t && cp -n fuzz/seeds/$$t/* $(FZ)/corpus-$$t/ 2>/dev/null; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  $(FZ)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -rss_limit_mb=1024 -timeout=10 \
	    -print_final_stats=1 $(FZ)/corpus-$$t 2>$(FZ)/fuzz_$$t.log || { tail -40 $(FZ)/fuzz_$$t.log; exit 1; }; \
	  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' $(FZ)/fuzz_$$t.log | tr '\n' ' '; echo; \
	done

fuzz-build: $(TARGETS)

$(FZ)/fuzz_h1: fuzz/fuzz_h1.c gateway/h1/h1.c $(CORE)
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS)
$(FZ)/fuzz_h2: fuzz/fuzz_h2.c gateway/h2/h2.c $(CORE)
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS)
$(FZ)/fuzz_conf: fuzz/fuzz_conf.c gateway/conf/conf.c $(CORE)
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS)
$(FZ)/fuzz_hl7v2: fuzz/fuzz_hl7v2.c gateway/codec/hl7v2.c gateway/codec/xml.c $(CORE)
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS)
$(FZ)/fuzz_fhir: fuzz/fuzz_fhir.c gateway/codec/fhir.c gateway/codec/xml.c $(CORE)
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS)
$(FZ)/fuzz_soap: fuzz/fuzz_soap.c gateway/msg/engine.c gateway/msg/outbound.c gateway/codec/fhir.c gateway/codec/hl7v2.c gateway/codec/xml.c \
  gateway/xform/xform.c gateway/xform/hl7fn.c gateway/validate/rules.c $(CORE)
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS)
$(FZ)/fuzz_cer: fuzz/fuzz_cer.c gateway/msg/engine.c gateway/msg/outbound.c gateway/codec/fhir.c gateway/codec/hl7v2.c gateway/codec/xml.c \
  gateway/xform/xform.c gateway/xform/hl7fn.c gateway/validate/rules.c $(CORE)
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS)
$(FZ)/fuzz_dconf: fuzz/fuzz_dconf.c gateway/deliver/config.c gateway/deliver/sched.c gateway/mllp/mllp.c gateway/msg/engine.c gateway/msg/outbound.c gateway/codec/fhir.c \
  gateway/codec/hl7v2.c gateway/codec/xml.c gateway/xform/xform.c gateway/xform/hl7fn.c gateway/validate/rules.c $(CORE)
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS)
$(FZ)/fuzz_owner: fuzz/fuzz_owner.c gateway/pipe/facts.c gateway/validate/memory.c gateway/validate/rules.c \
  gateway/store/store.c gateway/store/sqlite.c gateway/store/pg.c gateway/store/cli.c gateway/tls/seal.c gateway/tls/jwt.c gateway/codec/fhir.c \
  gateway/codec/xml.c $(CORE)
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS) $(shell pkg-config --libs sqlite3 libcrypto libpq)
$(FZ)/fuzz_sched: fuzz/fuzz_sched.c gateway/deliver/sched.c $(CORE)
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS)
$(FZ)/fuzz_mllp: fuzz/fuzz_mllp.c gateway/mllp/mllp.c
	@mkdir -p $(FZ)
	$(FCC) $(FUZZ_FLAGS) $^ -o $@ $(FUZZ_LIBS)
