%% Case generator for make-cases.sh (appended after Kazoo's temporal functions): runs one
%% rule at one local time in its own process (a process still busy after 300 ms is an
%% endless loop), and writes random rules at random times plus 400-day sweeps.

one(Cycle, Interval, Days, WDays, Ordinal, Month, Start, {LDate, LTime}, TStart, TStop) ->
    Self = self(),
    {Pid, Ref} = spawn_monitor(fun() ->
        R = try
            Rule = #rule{cycle=Cycle, interval=Interval, days=Days, wdays=sort_wdays(WDays),
                         ordinal=Ordinal, month=Month, start_date=Start,
                         wtime_start=TStart, wtime_stop=TStop},
            {Y,M,D} = LDate,
            LSec = calendar:datetime_to_gregorian_seconds({LDate, LTime}),
            SearchDate = case Cycle of <<"weekly">> -> {Y,M,D}; _ -> kz_date:normalize({Y,M,D-1}) end,
            BaseDate = kz_date:normalize(next_rule_date(Rule, SearchDate)),
            BaseTime = calendar:datetime_to_gregorian_seconds({BaseDate,{0,0,0}}),
            W = case {BaseTime + TStart, BaseTime + TStop} of
                    {S,_} when LSec < S -> before;
                    {_,E} when LSec > E -> 'after';
                    _ -> active
                end,
            {BY,BM,BD} = BaseDate,
            io_lib:format("~s:~b-~b-~b", [W, BY, BM, BD])
        catch _:_ -> "crash" end,
        Self ! {done, self(), lists:flatten(R)}
    end),
    receive
        {done, Pid, Res} -> erlang:demonitor(Ref, [flush]), Res
    after 300 -> exit(Pid, kill), erlang:demonitor(Ref, [flush]), "hang"
    end.

pick(L) -> lists:nth(rand:uniform(length(L)), L).
wpick(Pairs) ->
    Total = lists:sum([W || {W, _} <- Pairs]),
    X = rand:uniform(Total),
    wpick(X, Pairs).
wpick(X, [{W, V}|_]) when X =< W -> V;
wpick(X, [{W, _}|T]) -> wpick(X - W, T).

rand_date(Y0, Y1) ->
    D0 = calendar:date_to_gregorian_days(Y0,1,1), D1 = calendar:date_to_gregorian_days(Y1,12,31),
    calendar:gregorian_days_to_date(D0 + rand:uniform(D1 - D0 + 1) - 1).

gen_rule() ->
    Cycle = wpick([{10,<<"date">>},{25,<<"daily">>},{30,<<"weekly">>},{30,<<"monthly">>},{20,<<"yearly">>},{1,<<"hourly">>}]),
    Interval = wpick([{40,1},{25,pick([2,3,4])},{8,rand:uniform(12)},{2,0},{4,-rand:uniform(5)},{2,99 + rand:uniform(9901)}]),
    Day = fun() -> wpick([{40, rand:uniform(31)}, {3, pick([0,-1,32,45,100,29,30,31])}]) end,
    Days = wpick([{50,[]},{30,[Day()]},{15,[Day(),Day()]},{5,[Day(),Day(),Day()]}]),
    Names = [<<"monday">>,<<"tuesday">>,<<"wednesday">>,<<"wensday">>,<<"thursday">>,<<"friday">>,<<"saturday">>,<<"sunday">>],
    Name = fun() -> wpick([{99, pick(Names)}, {1, <<"funday">>}]) end,
    WDays = wpick([{15,[]},{50,[Name()]},{20,[Name(),Name()]},{15,[Name(),Name(),Name(),Name(),Name()]}]),
    Ordinal = wpick([{99, pick([<<"first">>,<<"second">>,<<"third">>,<<"fourth">>,<<"fifth">>,<<"every">>,<<"last">>])},{1,<<"bogus">>}]),
    Month = wpick([{90, rand:uniform(12)}, {5, pick([0,13,-1,14,25])}]),
    Start = wpick([{80, rand_date(1983, 2030)}, {20, rand_date(2015, 2030)}]),
    {TS, TE} = wpick([{40,{0,86400}},{40,{rand:uniform(86400)-1, rand:uniform(86400)}},{5,{-rand:uniform(90000), 86400 + rand:uniform(90000)}}]),
    {Cycle, Interval, Days, WDays, Ordinal, Month, Start, TS, TE}.

emit(F, {Cycle, Interval, Days, WDays, Ordinal, Month, {SY,SM,SD}, TS, TE}, {{LY,LM,LD},{H,Mi,S}}=Now) ->
    R = one(Cycle, Interval, Days, WDays, Ordinal, Month, {SY,SM,SD}, Now, TS, TE),
    io:format(F, "~s;~b;~s;~s;~s;~b;~b-~b-~b;~b-~b-~b;~b;~b;~b;~s~n",
              [Cycle, Interval, ints(Days), bins(WDays), Ordinal, Month, SY,SM,SD, LY,LM,LD, H*3600+Mi*60+S, TS, TE, R]).

ints(L) -> string:join([integer_to_list(I) || I <- L], ",").
bins(L) -> string:join([binary_to_list(B) || B <- L], ",").

rand_time() -> S = rand:uniform(86400) - 1, {S div 3600, (S rem 3600) div 60, S rem 60}.

main(Seed, NRandom, NSweep, Out) ->
    rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 5}),
    {ok, F} = file:open(Out, [write]),
    [begin Rule = gen_rule(), [emit(F, Rule, {rand_date(1990, 2100), rand_time()}) || _ <- lists:seq(1, 20)] end
     || _ <- lists:seq(1, NRandom)],
    [begin
         Rule = gen_rule(),
         D0 = calendar:date_to_gregorian_days(rand_date(2020, 2030)),
         [emit(F, Rule, {calendar:gregorian_days_to_date(D0 + K), {12,0,0}}) || K <- lists:seq(0, 399)]
     end || _ <- lists:seq(1, NSweep)],
    file:close(F).
