module portcullis/bench/loadgen

go 1.24
